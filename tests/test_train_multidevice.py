"""A smoke run on 4 CPU devices gives the 1-device train_loss (same seed and global batch)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(workdir, devices):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  done = subprocess.run([sys.executable, "main.py", "--config=configs/hdigits_ghmlc.py:smoke",
                         f"--workdir={workdir}", "--config.eval.probe_epochs=1"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def test_four_devices_match_one(tmp_path):
  one, four = run(tmp_path / "one", 1), run(tmp_path / "four", 4)
  assert one["steps"] == four["steps"] == 3
  assert abs(one["train_loss"] - four["train_loss"]) <= 1e-4, (one["train_loss"],
                                                               four["train_loss"])
  assert one["train_loss"] != 0.0
