"""Does splitting a CPU host into several XLA devices speed up training steps?

    python benchmarks/bench_cpu_devices.py --configs=configs/hdigits_ghmlc.py \\
        --variants=1,2,4,2:--xla_cpu_multi_thread_eigen=false --rounds=3

A variant is ``COUNT`` (XLA host devices, the step pmapped over them as
``main.py --cpu_devices=COUNT`` does) optionally followed by ``:EXTRA`` XLA
flags. The device count is fixed when jax starts, so every (round, variant)
runs `bench_train_step.py` in its own process; variants take turns within each
round, so a drift of the machine hits all of them alike. Reported per variant
and config: the median over rounds of each run's median step time, and the
speed-up over the first variant. JSON: one object per variant, holding
`bench_train_step.py`'s object per config plus ``round_step_ms``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--configs", default="configs/hdigits_ghmlc.py",
                 help="comma-separated config files, each optionally FILE.py:variant")
  p.add_argument("--variants", default="1,2",
                 help="comma-separated COUNT[:EXTRA_XLA_FLAGS]; the first is the baseline")
  p.add_argument("--rounds", type=int, default=3, help="processes per variant")
  p.add_argument("--steps", type=int, default=10, help="timed steps per process")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps per process")
  p.add_argument("--batch_size", type=int, default=0, help="global batch; 0 keeps each config's")
  p.add_argument("--json", default="bench_cpu_devices.json", help="output JSON path")
  args = p.parse_args(argv)
  args.variants = [v for v in args.variants.split(",") if v]
  for variant in args.variants:
    count = variant.split(":", 1)[0]
    if not count.isdigit() or int(count) < 1:
      p.error(f"variant {variant!r} must start with a positive device count")
  return args


def run_once(variant: str, args, json_path: str) -> dict:
  """One `bench_train_step.py` process for ``variant``; returns its JSON."""
  count, _, extra = variant.partition(":")
  inherited = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                       if "xla_force_host_platform_device_count" not in f)
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"{inherited} {extra}".strip())
  command = [sys.executable, os.path.join(HERE, "bench_train_step.py"),
             f"--configs={args.configs}", f"--cpu_devices={count}", f"--steps={args.steps}",
             f"--warmup={args.warmup}", f"--batch_size={args.batch_size}",
             f"--json={json_path}"]
  run = subprocess.run(command, env=env, capture_output=True, text=True)
  if run.returncode:
    sys.exit(f"error: variant {variant!r} failed:\n{run.stderr[-3000:]}")
  with open(json_path) as f:
    return json.load(f)


def combine(runs: list[dict]) -> dict:
  """Per config: the last run's object, with the median over runs' step times."""
  combined = {}
  for path in runs[-1]:
    per_round = [r[path]["step_ms"] for r in runs]
    step_ms = statistics.median(per_round)
    combined[path] = dict(runs[-1][path], step_ms=step_ms, round_step_ms=per_round,
                          examples_per_sec=runs[-1][path]["batch_size"] * 1e3 / step_ms)
  return combined


def print_table(results: dict) -> None:
  base = next(iter(results.values()))
  print("| variant | devices | config | step ms (median of rounds) | rounds | examples/s "
        "| speed-up |")
  print("|---|---|---|---|---|---|---|")
  for variant, per_config in results.items():
    for path, r in per_config.items():
      rounds = ", ".join(f"{t:.0f}" for t in r["round_step_ms"])
      print(f"| {variant} | {r['devices']} | {path} | {r['step_ms']:.1f} | {rounds} | "
            f"{r['examples_per_sec']:.1f} | {base[path]['step_ms'] / r['step_ms']:.2f}x |")


def interleaved(variants, rounds: int, measure) -> dict:
  """``{variant: [measure(variant, scratch_dir) for each round]}``; the variants
  take turns within each round, so a drift of the machine hits all alike."""
  results = {variant: [] for variant in variants}
  with tempfile.TemporaryDirectory() as tmp:
    for round_index in range(rounds):
      for variant in variants:
        print(f"round {round_index + 1}/{rounds}: {variant}", file=sys.stderr, flush=True)
        results[variant].append(measure(variant, tempfile.mkdtemp(dir=tmp)))
  return results


def main(argv=None) -> None:
  args = parse_args(argv)
  runs = interleaved(args.variants, args.rounds,
                     lambda variant, scratch: run_once(variant, args,
                                                       os.path.join(scratch, "run.json")))
  results = {variant: combine(r) for variant, r in runs.items()}
  print_table(results)
  with open(args.json, "w") as f:
    json.dump(results, f, indent=2)
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
