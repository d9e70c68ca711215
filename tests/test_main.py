"""main.py: the demo runs, --help documents every flag, and bad input gets one line and
exit status 2 without touching the workdir."""
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ["simclr", "supcon", "hmc", "hce", "hmce", "ghmlc", "ahmlc"]


def run_main(*args):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


def test_demo_prints_every_loss():
  out = run_main("--config=configs/demo.py:smoke", "--mode=demo", "--config.num_levels=3")
  assert out.returncode == 0, out.stderr
  table = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[2:]}
  assert sorted(table) == sorted(LOSSES)
  for name in LOSSES:
    value, grad_norm, ms = map(float, table[name])
    assert math.isfinite(value) and value > 0 and grad_norm > 0 and ms >= 0


def test_help_documents_every_flag():
  out = run_main("--help")
  assert out.returncode in (0, 1), out.stderr          # absl exits 1 after --help
  for flag in ("--config", "--workdir", "--mode", "--cpu_devices"):
    assert flag in out.stdout, flag
  assert "train: train (or resume)" in out.stdout


SMOKE = "--config=configs/hdigits_ghmlc.py:smoke"
DEMO = ["--config=configs/demo.py:smoke", "--mode=demo"]


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


@pytest.mark.parametrize("args, fragment", [
    (["--config=configs/missing.py"], "No such file"),
    ([SMOKE, "--config.method=hmlc"], "unknown method 'hmlc'"),
    ([SMOKE, "--config.model.backbone=vgg"], "model.backbone"),
    ([SMOKE, "--config.dataset.name=mnist"], "unknown dataset.name 'mnist'"),
    ([SMOKE, "--config.optimizer=rmsprop"], "unknown optimizer"),
    ([SMOKE, "--config.learning_rate=-1"], "learning_rate must be positive"),
    ([SMOKE, "--cpu_devices=3"], "not divisible"),
    (["--config=configs/modelnet40_ghmlc.py:smoke", "--config.dataset.data_dir=/nonexistent"],
     "/nonexistent"),
    ([SMOKE, "--mode=demo"], "--mode=demo takes configs/demo.py"),
    (["--config=configs/demo.py:huge"], "unknown variant 'huge'"),
    ([*DEMO, "--config.no_such_field=1"], "no_such_field"),
    ([*DEMO, "--config.batch_size=many"], "batch_size"),
    ([*DEMO, "--config.temperature=0"], "temperature"),
    ([*DEMO, "--config.gmm.order=random"], "gmm.order"),
    ([*DEMO, "--config.level_weights=cubic"], "level_weights"),
    ([*DEMO, "--config.num_levels=0"], "num_levels"),
    ([*DEMO, "--mode=fly"], "--mode"),
    ([*DEMO, "stray"], "unexpected arguments"),
    ([], "--config is required"),
    ([SMOKE, "--config.batch_size=0"], "batch_size must be at least 1"),
    ([SMOKE, "--config.temperature=-0.1"], "temperature"),
    ([SMOKE, "--config.nan_policy=ignore"], "unknown nan_policy 'ignore'"),
    ([SMOKE, "--config.max_skips=0"], "max_skips must be at least 1"),
    ([SMOKE, "--config.dataset.eval_split=val"], "dataset.eval_split"),
    ([SMOKE, "--mode=eval"], "no checkpoint"),
    ([SMOKE, "--mode=tsne"], "not found"),
])
def test_bad_input_gets_one_line_and_status_2(args, fragment, tmp_path):
  workdir = tmp_path / "run"
  out = run_main(*args, f"--workdir={workdir}")
  assert out.returncode == 2, (out.stdout, out.stderr)
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
  assert fragment in lines[0]
  assert not workdir.exists()
