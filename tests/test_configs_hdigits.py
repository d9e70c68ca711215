"""Every hdigits config's :smoke variant trains, checkpoints and evaluates."""
import pytest

from tests.smoke import run_and_check, smoke_config


@pytest.mark.parametrize("method", ["supcon", "hmce", "ghmlc", "ahmlc"])
def test_hdigits_smoke(method, tmp_path):
  run_and_check(smoke_config(f"hdigits_{method}"), tmp_path)
