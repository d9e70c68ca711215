"""Seconds per step of the real training run (`main.py`) under several --cpu_devices.

    python benchmarks/bench_default_run.py --config=configs/hdigits_ghmlc.py \\
        --cpu_devices=2,8 --rounds=2 --from_step=25 --to_step=75

Unlike `bench_train_step.py` (random data, the step alone), this starts the
command users run, with its real data and input pipeline, and times the
training loop between the metric lines of steps ``--from_step`` and
``--to_step`` (compilation and the first steps excluded); then it stops the
run. Device counts take turns within each round. Prints a table and writes
JSON: seconds per step for every device count and round.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.bench_cpu_devices import interleaved  # noqa: E402


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--config", default="configs/hdigits_ghmlc.py")
  p.add_argument("--cpu_devices", default="2,8", help="comma-separated device counts")
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--from_step", type=int, default=25)
  p.add_argument("--to_step", type=int, default=75)
  p.add_argument("--json", default="bench_default_run.json", help="output JSON path")
  p.add_argument("--main_flags", default="",
                 help="more main.py flags, space-separated, e.g. --config.tensorboard=False")
  args = p.parse_args(argv)
  if not 0 < args.from_step < args.to_step:
    p.error("need 0 < --from_step < --to_step")
  args.cpu_devices = [int(n) for n in args.cpu_devices.split(",") if n]
  return args


def seconds_per_step(args, devices: int, workdir: str) -> float:
  """Starts main.py, timestamps its metric lines, stops it after ``to_step``."""
  command = [sys.executable, "main.py", f"--config={args.config}", f"--workdir={workdir}",
             f"--cpu_devices={devices}", "--config.log_every_steps=1",
             f"--config.num_train_steps={args.to_step + 1}", *args.main_flags.split()]
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, bufsize=1)
  marks = {}
  try:
    for line in proc.stderr:              # metric lines go to stderr, beside the progress bar
      for step in map(int, re.findall(r"step (\d+): ", line)):
        marks.setdefault(step, time.perf_counter())
      if args.to_step in marks:
        break
  finally:
    proc.kill()
    proc.wait()
  if args.from_step not in marks or args.to_step not in marks:
    sys.exit(f"error: main.py with {devices} devices ended before step {args.to_step}")
  return (marks[args.to_step] - marks[args.from_step]) / (args.to_step - args.from_step)


def main(argv=None) -> None:
  args = parse_args(argv)
  times = interleaved(args.cpu_devices, args.rounds,
                      lambda devices, scratch: seconds_per_step(
                          args, devices, os.path.join(scratch, "workdir")))
  base = statistics.median(times[args.cpu_devices[0]])
  print(f"| --cpu_devices | s/step (median) | rounds | speed-up vs {args.cpu_devices[0]} |")
  print("|---|---|---|---|")
  for devices, t in times.items():
    rounds = ", ".join(f"{s:.3f}" for s in t)
    print(f"| {devices} | {statistics.median(t):.3f} | {rounds} | "
          f"{base / statistics.median(t):.2f}x |")
  with open(args.json, "w") as f:
    json.dump(dict(config=args.config, from_step=args.from_step, to_step=args.to_step,
                   date=time.strftime("%Y-%m-%d"), cpu_count=os.cpu_count(),
                   seconds_per_step={str(n): t for n, t in times.items()}), f, indent=2)
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
