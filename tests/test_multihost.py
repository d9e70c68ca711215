"""Two processes on 127.0.0.1 (2 CPU devices each, `jax.distributed` + gloo) and
one process with 4 CPU devices train exactly like one process with 1 device
(same seed and global batch): the run tests' shared reference (tests/runs.py),
whose command they repeat. Bad multi-process flags: tests/test_bad_input.py."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import xla_flags
from tests.runs import ARGS, STEPS, shared_reference

ROOT = Path(__file__).resolve().parents[1]


def environment(devices):
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
  return dict(env, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
              XLA_FLAGS=xla_flags(devices))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(workdir, devices, *extra):
  # The reference's command with two checkpoints instead of ten (the step's program
  # does not depend on them).
  return subprocess.Popen([sys.executable, "main.py", *ARGS, f"--workdir={workdir}",
                           f"--config.checkpoint_every_steps={STEPS // 2}", *extra],
                          cwd=ROOT, env=environment(devices), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=110):
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    raise
  assert proc.returncode == 0, err[-2000:]
  return out


def results(workdir):
  return json.loads((workdir / "results.json").read_text())


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
  """One process with 4 devices."""
  workdir = tmp_path_factory.mktemp("four")
  finish(start(workdir, 4))
  return results(workdir)


def test_four_devices_match_one(four_devices, tmp_path_factory):
  one = results(shared_reference(tmp_path_factory)[0])       # one process, 1 device
  assert one["steps"] == four_devices["steps"] == STEPS
  # 30 steps of float32 sums in another order: 3.9e-5 apart when measured.
  assert abs(one["train_loss"] - four_devices["train_loss"]) <= 1e-4, (
      one["train_loss"], four_devices["train_loss"])
  assert one["train_loss"] != 0.0


def test_two_processes_match_one_process_with_four_devices(four_devices, tmp_path):
  address = f"127.0.0.1:{free_port()}"
  workers = [start(tmp_path / "two", 2, f"--coordinator_address={address}",
                   "--num_processes=2", f"--process_id={i}") for i in range(2)]
  outs = [finish(p) for p in workers]
  # Gloo's own connection lines (and the blank lines it sometimes adds) are not reports;
  # its threads can split a line ("[Gloo] Rank " / "2 is connected to 3 peer ranks...").
  gloo = lambda l: l.startswith("[Gloo]") or "peer ranks" in l
  ours = [[l for l in out.splitlines() if l.strip() and not gloo(l)] for out in outs]
  assert any("linear probe" in l for l in ours[0]) and ours[1] == []   # only process 0 reports
  two = results(tmp_path / "two")
  assert abs(two["train_loss"] - four_devices["train_loss"]) < 1e-4
  assert two["steps"] == four_devices["steps"] == STEPS
  steps = sorted(int(p.name) for p in (tmp_path / "two" / "checkpoints").iterdir())
  assert steps == [STEPS // 2, STEPS]
