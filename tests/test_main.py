"""main.py: the demo runs, and bad input gets one line and exit status 2."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ["simclr", "supcon", "hmc", "hce", "hmce", "ghmlc", "ahmlc"]


def run_main(*args):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


def test_demo_prints_every_loss():
  out = run_main("--config=configs/demo.py:smoke", "--config.num_levels=3")
  assert out.returncode == 0, out.stderr
  table = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[2:]}
  assert sorted(table) == sorted(LOSSES)
  for name in LOSSES:
    value, grad_norm, ms = map(float, table[name])
    assert math.isfinite(value) and value > 0 and grad_norm > 0 and ms >= 0


@pytest.mark.parametrize("args, fragment", [
    (["--config=configs/missing.py"], "No such file"),
    (["--config=configs/demo.py:huge"], "unknown variant 'huge'"),
    (["--config=configs/demo.py:smoke", "--config.no_such_field=1"], "no_such_field"),
    (["--config=configs/demo.py:smoke", "--config.batch_size=many"], "batch_size"),
    (["--config=configs/demo.py:smoke", "--config.temperature=0"], "temperature"),
    (["--config=configs/demo.py:smoke", "--config.gmm.order=random"], "gmm.order"),
    (["--config=configs/demo.py:smoke", "--config.level_weights=cubic"], "level_weights"),
    (["--config=configs/demo.py:smoke", "--config.num_levels=0"], "num_levels"),
    (["--config=configs/demo.py:smoke", "--mode=fly"], "--mode"),
    (["--config=configs/demo.py:smoke", "stray"], "unexpected arguments"),
    ([], "--config is required"),
])
def test_bad_input_gets_one_line_and_status_2(args, fragment):
  out = run_main(*args)
  assert out.returncode == 2, (out.stdout, out.stderr)
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
  assert fragment in lines[0]
