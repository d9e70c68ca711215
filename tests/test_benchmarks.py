"""benchmarks/bench_train_step.py runs several configs side by side and writes the
documented JSON (one object per config path)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"examples_per_sec", "step_ms", "compile_s", "peak_memory_bytes", "flops_per_step",
        "mfu"}


def test_train_step_benchmark_smoke(tmp_path):
  configs = ["configs/hdigits_supcon.py:smoke", "configs/hdigits_ghmlc.py:smoke"]
  out = tmp_path / "bench.json"
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  run = subprocess.run([sys.executable, "benchmarks/bench_train_step.py",
                        f"--configs={','.join(configs)}", "--steps=3", "--warmup=1",
                        "--batch_size=32", f"--json={out}"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-2000:]
  results = json.loads(out.read_text())
  assert list(results) == configs
  for path, r in results.items():
    assert KEYS <= set(r), path
    assert r["batch_size"] == 32 and len(r["step_ms_all"]) == 3
    assert sorted(r["step_ms_all"])[1] == r["step_ms"]                 # the median
    assert abs(r["examples_per_sec"] * r["step_ms"] / 1e3 - 32) < 1e-6
    assert r["flops_per_step"] > 0 and r["mfu"] is None and r["platform"] == "cpu"
  assert "| configs/hdigits_ghmlc.py:smoke | ghmlc | 32 |" in run.stdout
