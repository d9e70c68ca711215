"""The hdigits configs' :smoke variants train, checkpoint and evaluate.

SupCon and HMCE run end to end (and must learn) in tests/test_learning.py on
the hfashion configs; here the two masked methods and bf16 compute.
"""
import pytest

from tests.smoke import run_and_check, smoke_config


@pytest.mark.parametrize("method", ["ghmlc", "ahmlc"])
def test_hdigits_smoke(method, tmp_path):
  run_and_check(smoke_config(f"hdigits_{method}"), tmp_path)


def test_hdigits_smoke_bfloat16_compute(tmp_path):
  run_and_check(smoke_config("hdigits_ghmlc", **{"model.dtype": "bfloat16"}), tmp_path)
