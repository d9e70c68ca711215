"""The hdigits :smoke config in bfloat16 compute, end to end.

The float32 config runs end to end through main.py in tests/test_training_runs.py,
every method's step in tests/test_train.py, and SupCon, HMCE, G-HMLC and A-HMLC
must learn in tests/test_learning.py.
"""
from tests.smoke import run_and_check, smoke_config


def test_hdigits_smoke_bfloat16_compute(tmp_path):
  run_and_check(smoke_config("hdigits_ghmlc", **{"model.dtype": "bfloat16"}), tmp_path)
