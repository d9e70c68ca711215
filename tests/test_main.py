"""main.py: the demo runs, --help documents every flag, and a data set that must be
downloaded fails fast offline (other bad input: tests/test_bad_input.py)."""
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runs import environment, run_command

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ["simclr", "supcon", "hmc", "hce", "hmce", "ghmlc", "ahmlc"]


def run_main(*args):
  """A fresh `python main.py` process (what the timed offline tests measure)."""
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


def test_demo_prints_every_loss():
  out = run_command("main.py", ["--config=configs/demo.py:smoke", "--mode=demo",
                                "--config.num_levels=3"], environment(devices=None))
  assert out.returncode == 0, out.stderr
  table = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[2:]}
  assert sorted(table) == sorted(LOSSES)
  for name in LOSSES:
    value, grad_norm, ms = map(float, table[name])
    assert math.isfinite(value) and value > 0 and grad_norm > 0 and ms >= 0


def test_help_documents_every_flag():
  out = run_command("main.py", ["--help"], environment(devices=None))
  assert out.returncode in (0, 1), out.stderr          # absl exits 1 after --help
  for flag in ("--config", "--workdir", "--mode", "--cpu_devices"):
    assert flag in out.stdout, flag
  assert "train: train (or resume)" in out.stdout


@pytest.mark.parametrize("config", ["configs/cifar100_ghmlc.py:smoke",
                                    "configs/hmnist_ghmlc.py:smoke"])
def test_offline_download_fails_fast_with_one_line(config, tmp_path):
  """A data set that must be downloaded, on a machine that cannot reach the
  download servers: one line naming where the files go, exit 2, well within 30 s."""
  from hmlc_jax.data import tfds_io
  if tfds_io.can_reach_downloads():
    pytest.skip("this machine can reach the download servers")
  start = time.perf_counter()
  out = run_main(f"--config={config}", f"--config.dataset.data_dir={tmp_path / 'data'}",
                 f"--workdir={tmp_path / 'run'}")
  seconds = time.perf_counter() - start
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
  assert str(tmp_path / "data") in lines[0] and "cannot reach" in lines[0]
  assert seconds < 30, seconds
