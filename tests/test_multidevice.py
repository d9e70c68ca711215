"""pmapped losses on 4 CPU devices equal single-device losses on the whole batch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import xla_flags
from tests.multidevice_parity import LEVELS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def parity_report():
  env = dict(os.environ, XLA_FLAGS=xla_flags(4),
             JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  out = subprocess.run([sys.executable, "-m", "tests.multidevice_parity"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_four_devices_were_used(parity_report):
  assert parity_report["devices"] == 4


@pytest.mark.parametrize("num_levels", LEVELS)
@pytest.mark.parametrize("name", ["simclr", "supcon", "hmc", "hce", "hmce", "ghmlc",
                                  "ghmlc_batch_soft", "ghmlc_dp", "ahmlc"])
def test_loss_and_gradient_parity(parity_report, name, num_levels):
  case = parity_report[f"{name}/H={num_levels}"]
  assert case["loss"] <= 1e-5, case
  assert case["grad"] <= 1e-5, case
