"""Every loss on 4 CPU devices, in each parallel style users write (jax.pmap,
jax.jit of jax.shard_map with its default check_vma, plain jax.jit over a
sharded batch), equals the single-device loss on the whole batch, in value and
in the gradients with respect to the inputs and a replicated parameter."""
import json

import pytest

from tests.multidevice_parity import LEVELS, STYLES, cases_of
from tests.runs import environment, run_command


@pytest.fixture(scope="module")
def parity_report():
  out = run_command("tests.multidevice_parity", [], environment(devices=4), timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_four_devices_were_used(parity_report):
  assert parity_report["devices"] == 4


@pytest.mark.parametrize("num_levels", LEVELS)
@pytest.mark.parametrize("name, style", [(n, s) for s in STYLES for n in cases_of(s)])
def test_loss_and_gradient_parity(parity_report, name, style, num_levels):
  case = parity_report[f"{name}/{style}/H={num_levels}"]
  assert case["loss"] <= 1e-5, case
  assert case["grad_w"] <= 1e-5, case
  assert case["grad_x"] <= 1e-5, case
