"""Two processes on 127.0.0.1 (2 CPU devices each, `jax.distributed` + gloo: four
devices, two of them in each process) train exactly like one process with 1
device (same seed and global batch): the run tests' shared reference
(tests/runs.py), whose command they repeat. Parity of every loss and of
synchronised BatchNorm on 4 devices in one process: tests/test_multidevice.py,
tests/test_models.py. Bad multi-process flags: tests/test_bad_input.py."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

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


def test_two_processes_with_two_devices_each_match_one_device(tmp_path, tmp_path_factory):
  address = f"127.0.0.1:{free_port()}"
  workers = [start(tmp_path / "two", 2, f"--coordinator_address={address}",
                   "--num_processes=2", f"--process_id={i}") for i in range(2)]
  outs = [finish(p) for p in workers]
  # Gloo's own connection lines (and the blank lines it sometimes adds) are not reports;
  # its threads can split a line ("[Gloo] Rank " / "2 is connected to 3 peer ranks...").
  gloo = lambda l: l.startswith("[Gloo]") or "peer ranks" in l
  ours = [[l for l in out.splitlines() if l.strip() and not gloo(l)] for out in outs]
  assert any("linear probe" in l for l in ours[0]) and ours[1] == []   # only process 0 reports
  one, two = results(shared_reference(tmp_path_factory)[0]), results(tmp_path / "two")
  # 30 steps of float32 sums in another order: 2.0e-5 apart when measured.
  assert abs(one["train_loss"] - two["train_loss"]) <= 1e-4, (one["train_loss"],
                                                             two["train_loss"])
  assert one["train_loss"] != 0.0
  assert one["steps"] == two["steps"] == STEPS
  steps = sorted(int(p.name) for p in (tmp_path / "two" / "checkpoints").iterdir())
  assert steps == [STEPS // 2, STEPS]
