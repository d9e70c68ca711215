"""Our training step against PyTorch's on this CPU: the same model, batch and views.

    python benchmarks/bench_vs_torch_cpu.py --config=configs/hfashion_supcon.py \\
        --torch_python=/path/to/torch-venv/bin/python --rounds=3 \\
        --json=benchmarks/results/bench_vs_torch_cpu.json

torch is never a dependency of hmlc_jax: install it in a separate virtual
environment (``python -m venv torchvenv && torchvenv/bin/pip install torch``)
and name its interpreter. Each round runs, one process after another, ours
(``bench_train_step.py`` on the config: augmentation, backbone, loss, AdamW
update, pmapped over the default CPU devices), PyTorch eager and PyTorch
``torch.compile`` (``torch_supcon_step.py --model=small_cnn``: the config's
small CNN, width, stem and head, float32, AdamW, SupCon over two views;
random images already in memory, no augmentation, which favours PyTorch).
Reported: the median over rounds of each process's median step, examples/s,
and ours over theirs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="configs/hfashion_supcon.py")
  p.add_argument("--torch_python", required=True, help="python of a venv that has torch")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--steps", type=int, default=10, help="timed steps per process")
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--json", default="bench_vs_torch_cpu.json")
  return p.parse_args(argv)


def torch_command(python: str, config, compile_mode: str, steps: int, warmup: int,
                  out: str) -> list:
  from bench_train_step import IMAGE_SHAPES
  if config.model.backbone != "small_cnn" or config.model.get("convs_per_stage", 2) != 1:
    raise SystemExit("bench_vs_torch_cpu: the PyTorch twin exists for small_cnn with "
                     "convs_per_stage=1 only")
  side, channels = IMAGE_SHAPES[config.dataset.name]
  return [python, os.path.join(HERE, "torch_supcon_step.py"), "--model=small_cnn",
          f"--image={side},{side},{channels}", f"--width={config.model.width}",
          f"--space_to_depth={config.model.get('space_to_depth', 1)}",
          f"--batch_size={config.batch_size}", "--dtype=float32", "--optimizer=adamw",
          f"--compile_mode={compile_mode}", f"--steps={steps}", f"--warmup={warmup}",
          f"--json={out}"]


def run(command: list, out: str) -> dict:
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  with open(out) as f:
    return next(iter(json.load(f).values()))


def main(argv=None) -> None:
  args = parse_args(argv)
  from hmlc_jax.sweeps import config_from_file
  config = config_from_file(args.config)
  ours = [sys.executable, os.path.join(HERE, "bench_train_step.py"), f"--configs={args.config}",
          f"--steps={args.steps}", f"--warmup={args.warmup}"]
  samples = {"hmlc_jax": [], "torch eager": [], "torch.compile": []}
  matmul = []
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "result.json")
    commands = {"hmlc_jax": ours + [f"--json={out}"],
                "torch eager": torch_command(args.torch_python, config, "none", args.steps,
                                             args.warmup, out),
                "torch.compile": torch_command(args.torch_python, config, "default",
                                               args.steps, args.warmup, out)}
    for r in range(args.rounds):
      for name, command in commands.items():
        result = run(command, out)
        samples[name].append(result["step_ms"])
        if name == "hmlc_jax":
          matmul.append(result["matmul_gflops_per_sec"])
        print(f"round {r + 1}: {name} {result['step_ms']:.1f} ms", file=sys.stderr, flush=True)
  step_ms = {name: statistics.median(v) for name, v in samples.items()}
  rows = {name: dict(step_ms=ms, examples_per_sec=1e3 * config.batch_size / ms,
                     ours_over_this=step_ms[name] / step_ms["hmlc_jax"],
                     step_ms_rounds=samples[name])
          for name, ms in step_ms.items()}
  print(f"| {args.config}, batch {config.batch_size} x 2 views | step ms | examples/s | "
        "ours / this (examples/s) |")
  print("|---|---|---|---|")
  for name, r in rows.items():
    print(f"| {name} | {r['step_ms']:.1f} | {r['examples_per_sec']:.1f} | "
          f"{r['ours_over_this']:.2f} |")
  meta = dict(config=args.config, rounds=args.rounds, steps=args.steps, warmup=args.warmup,
              matmul_gflops_per_sec_rounds=matmul, cpu_count=os.cpu_count(),
              date=time.strftime("%Y-%m-%d"))
  with open(args.json, "w") as f:
    json.dump(dict(rows=rows, **meta), f, indent=2)
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
