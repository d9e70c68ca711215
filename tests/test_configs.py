"""Every training config file: loads, names a known method, and takes the GMM
defaults from the one place they are defined (`hmlc_jax.gmm.GMMConfig`)."""
import dataclasses
from pathlib import Path

import pytest

from hmlc_jax import methods, sweeps
from hmlc_jax.gmm import GMMConfig

ROOT = Path(__file__).resolve().parents[1]
TRAINING_CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*_*.py") if p.name != "__init__.py")


def test_there_are_training_configs():
  assert len(TRAINING_CONFIGS) >= 20 and "hdigits_ghmlc.py" in TRAINING_CONFIGS


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
def test_config_method_and_gmm_defaults(name):
  config = sweeps.config_from_file(str(ROOT / "configs" / name))
  assert config.method in methods.METHODS
  assert config.gmm.to_dict() == dataclasses.asdict(GMMConfig())


def test_method_table_drives_attention_heads_and_help():
  assert [m for m in methods.METHODS if methods.uses_attention_heads(m)] == ["ahmlc"]
  assert methods.METHOD_NAMES.split(" | ") == list(methods.METHODS)
