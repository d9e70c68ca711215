"""pmapped losses on 4 CPU devices equal single-device losses on the whole batch."""
import json

import pytest

from tests.multidevice_parity import LEVELS
from tests.runs import environment, run_command


@pytest.fixture(scope="module")
def parity_report():
  out = run_command("tests.multidevice_parity", [], environment(devices=4), timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
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
