"""Whole training steps of several configs side by side: speed, compile time, memory, MFU.

    python benchmarks/bench_train_step.py \\
        --configs=configs/hdigits_supcon.py,configs/hdigits_ghmlc.py,configs/hdigits_ahmlc.py
    python benchmarks/bench_train_step.py --configs=configs/cifar100_supcon.py,\\
        configs/cifar100_ghmlc.py --batch_size=1024 --steps=20 --json=bench_gpu.json

Each config's pmapped `train_step` (augmentation, backbone, loss, gradient,
optimiser update: exactly what `main.py` runs) is compiled ahead of time
(``compile_s``), warmed up, then timed over ``--steps`` rounds that call
every config once each (round-robin, so drifts of the machine hit all of
them alike); each call ends in ``block_until_ready`` and the median is
reported. Inputs are random data of the data set's shape and label tree (no
download), a few host batches cycled, so the host-to-device copy of each
batch is included as in training. ``flops_per_step`` comes from XLA's cost
analysis of the compiled step (all devices); ``mfu`` divides the achieved
FLOP/s by the devices' dense bf16 peak (GPU/TPU only; None on CPU, as is
``peak_memory_bytes`` where the device reports no memory statistics).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hmlc_jax.cpu import cpu_devices_for, split_cpu   # noqa: E402  (before jax)

# Dense bf16 peak FLOP/s per device (vendor data sheets), by device_kind substring.
PEAK_BF16 = (("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("L4", 121e12),
             ("TPU v6", 918e12), ("TPU v5p", 459e12), ("TPU v5", 197e12),
             ("TPU v4", 275e12), ("TPU v3", 123e12), ("TPU v2", 46e12))
NUM_BATCHES = 4


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--configs", required=True,
                 help="comma-separated config files, each optionally FILE.py:variant")
  p.add_argument("--batch_size", type=int, default=0, help="global batch; 0 keeps each config's")
  p.add_argument("--steps", type=int, default=10, help="timed rounds")
  p.add_argument("--warmup", type=int, default=2, help="untimed rounds after compiling")
  p.add_argument("--cpu_devices", type=int, default=0,
                 help="CPU only: XLA host devices (0: as main.py, four per core, at most 8)")
  p.add_argument("--json", default="bench_train_step.json", help="output JSON path")
  return p.parse_args(argv)


def random_dataset(config, size: int, seed: int = 0):
  """A `Dataset` of random inputs with the shape, kind and label tree of
  ``config.dataset`` (uint8 images or unit-ball point clouds)."""
  import numpy as np
  from hmlc_jax.data import Dataset
  name = config.dataset.name
  rng = np.random.default_rng(seed)
  if name in ("modelnet40", "shapes3d"):
    kind, classes = "points", (9, 40) if name == "modelnet40" else (4, 16)
    x = rng.normal(size=(size, config.dataset.num_points, 3)).astype(np.float32)
    x /= np.abs(x).max()
  else:
    side, channels = {"cifar100": (32, 3), "hdigits": (32, 1)}.get(
        name, (config.dataset.get("canvas", 56), 1))
    kind, classes = "image", (20, 100) if name == "cifar100" else (10, 100)
    x = rng.integers(0, 256, size=(size, side, side, channels), dtype=np.uint8)
  fine = rng.integers(0, classes[1], size=size)
  y = np.stack([fine * classes[0] // classes[1], fine], axis=1).astype(np.int32)
  return Dataset(name=name, kind=kind, train_x=x, train_y=y, test_x=x[:1], test_y=y[:1],
                 num_classes=classes, level_names=("coarse", "fine"))


class Case:
  """One config's compiled step, live state and host batches."""

  def __init__(self, path: str, config):
    import jax
    from hmlc_jax import train
    from hmlc_jax.data import augment
    self.path, self.config = path, config
    data = random_dataset(config, NUM_BATCHES * config.batch_size)
    model = train.build_model(config, data, axis_name=train.AXIS)
    sample = augment.prepare_eval(data.train_x[:1], data.kind)
    state = train.create_train_state(config, model, sample, len(data.train_x))
    _, schedule = train.make_optimizer(config, 10 ** 6, len(data.train_x))
    self.batches = [train.device_batch(data, config, s) for s in range(NUM_BATCHES)]
    self.state = train.replicate(state)
    step = train.pmapped_train_step(model, config, data.kind, schedule)
    start = time.perf_counter()
    self.compiled = step.lower(self.state, self.batches[0]).compile()
    self.compile_s = time.perf_counter() - start
    self.flops = flops_of(self.compiled) * jax.local_device_count()
    self.times, self.calls = [], 0

  def call(self) -> float:
    import jax
    start = time.perf_counter()
    self.state, metrics = self.compiled(self.state, self.batches[self.calls % NUM_BATCHES])
    jax.block_until_ready((self.state, metrics))
    self.calls += 1
    return time.perf_counter() - start


def flops_of(compiled) -> float | None:
  """FLOPs of one device's program from XLA's cost analysis (None if not reported)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:   # some backends do not implement it
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  flops = (cost or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def peak_flops(device) -> float | None:
  if device.platform == "cpu":
    return None
  return next((peak for key, peak in PEAK_BF16 if key in device.device_kind), None)


def peak_memory(device) -> int | None:
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def measure(cases, steps: int, warmup: int) -> None:
  for _ in range(warmup):
    for case in cases:
      case.call()
  for _ in range(steps):
    for case in cases:
      case.times.append(case.call())


def summary(case) -> dict:
  import jax
  devices = jax.local_devices()
  step_s = statistics.median(case.times)
  peak = peak_flops(devices[0])
  achieved = case.flops / step_s if case.flops else None
  return dict(examples_per_sec=case.config.batch_size / step_s, step_ms=1e3 * step_s,
              compile_s=case.compile_s, peak_memory_bytes=peak_memory(devices[0]),
              flops_per_step=case.flops,
              mfu=achieved / (peak * len(devices)) if achieved and peak else None,
              method=case.config.method, backbone=case.config.model.backbone,
              dtype=case.config.model.dtype, batch_size=case.config.batch_size,
              step_ms_all=[1e3 * t for t in case.times])


def print_table(results: dict) -> None:
  base = next((r for r in results.values() if r["method"] == "supcon"), None)
  print("| config | method | batch | examples/s | step ms | vs supcon | compile s | "
        "peak memory | GFLOP/step | MFU |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for path, r in results.items():
    ratio = f"{r['step_ms'] / base['step_ms']:.3f}" if base else "n/a"
    memory = f"{r['peak_memory_bytes'] / 2 ** 30:.2f} GiB" if r["peak_memory_bytes"] else "n/a"
    gflops = f"{r['flops_per_step'] / 1e9:.4g}" if r["flops_per_step"] else "n/a"
    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "n/a"
    print(f"| {path} | {r['method']} | {r['batch_size']} | {r['examples_per_sec']:.1f} | "
          f"{r['step_ms']:.1f} | {ratio} | {r['compile_s']:.1f} | {memory} | {gflops} | {mfu} |")


def load(spec: str, batch_size: int):
  from hmlc_jax.compare import config_from_file
  config = config_from_file(spec)
  if batch_size:
    config.batch_size = batch_size
  return config


def main(argv=None) -> None:
  args = parse_args(argv)
  specs = [s for s in args.configs.split(",") if s]
  first = load(specs[0], args.batch_size)
  split_cpu(args.cpu_devices or cpu_devices_for(first.batch_size))   # before jax starts
  import jax
  cases = []
  for spec in specs:
    case = Case(spec, load(spec, args.batch_size))
    print(f"compiled {spec} in {case.compile_s:.1f} s", file=sys.stderr, flush=True)
    cases.append(case)
  measure(cases, args.steps, args.warmup)
  results = {case.path: summary(case) for case in cases}
  print_table(results)
  meta = dict(device=jax.devices()[0].device_kind, platform=jax.devices()[0].platform,
              devices=jax.local_device_count(), jax=jax.__version__, host=platform.node(),
              cpu_count=os.cpu_count(), steps=args.steps, warmup=args.warmup,
              date=time.strftime("%Y-%m-%d"))
  with open(args.json, "w") as f:      # one object per config path
    json.dump({path: dict(r, **meta) for path, r in results.items()}, f, indent=2)
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
