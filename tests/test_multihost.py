"""Two processes on 127.0.0.1 (2 CPU devices each, `jax.distributed` + gloo) train
exactly like one process with 4 devices; bad multi-process flags are one-line errors."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--config=configs/hdigits_ghmlc.py:smoke", "--config.num_train_steps=6",
        "--config.checkpoint_every_steps=3"]


def environment(devices):
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
  return dict(env, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(workdir, devices, *extra):
  return subprocess.Popen([sys.executable, "main.py", *ARGS, f"--workdir={workdir}", *extra],
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


def test_two_processes_match_one_process_with_four_devices(tmp_path):
  began = time.time()
  address = f"127.0.0.1:{free_port()}"
  workers = [start(tmp_path / "two", 2, f"--coordinator_address={address}",
                   "--num_processes=2", f"--process_id={i}") for i in range(2)]
  outs = [finish(p) for p in workers]
  single = finish(start(tmp_path / "one", 4))
  # Gloo's own connection lines (and the blank lines it sometimes adds) are not reports.
  ours = [[l for l in out.splitlines() if l.strip() and not l.startswith("[Gloo]")]
          for out in outs]
  assert any("linear probe" in l for l in ours[0]) and ours[1] == []   # only process 0 reports
  two, one = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("two", "one"))
  assert abs(two["train_loss"] - one["train_loss"]) < 1e-4
  assert two["steps"] == one["steps"] == 6
  steps = sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir())
  assert steps == ["3", "6"]
  assert time.time() - began < 120


@pytest.mark.parametrize("extra, fragment", [
    (["--num_processes=2", "--process_id=0"], "needs --coordinator_address"),
    (["--coordinator_address=127.0.0.1", "--num_processes=2", "--process_id=0"], "HOST:PORT"),
    (["--coordinator_address=127.0.0.1:1", "--num_processes=2", "--process_id=2"],
     "--process_id must lie in [0, 2)"),
    (["--num_processes=0"], "--num_processes must be at least 1"),
])
def test_bad_multiprocess_flags(tmp_path, extra, fragment):
  proc = start(tmp_path / "run", 1, *extra)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
  assert not (tmp_path / "run").exists()
