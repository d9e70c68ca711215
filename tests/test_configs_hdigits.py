"""Every hdigits config's :smoke variant trains, checkpoints and evaluates."""
import pytest

from tests.smoke import run_and_check, smoke_config


@pytest.mark.parametrize("method", ["supcon", "hmce", "ghmlc", "ahmlc"])
def test_hdigits_smoke(method, tmp_path):
  run_and_check(smoke_config(f"hdigits_{method}"), tmp_path)


def test_hdigits_smoke_bfloat16_compute(tmp_path):
  run_and_check(smoke_config("hdigits_ghmlc", **{"model.dtype": "bfloat16"}), tmp_path)
