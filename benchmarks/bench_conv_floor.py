"""The convolutions alone of a small-CNN config, beside its whole training step.

    python benchmarks/bench_conv_floor.py --config=configs/hfashion_supcon.py \\
        --json=benchmarks/results/conv_floor_hfashion.json

A floor for the step: every convolution of the config's ``small_cnn``, at the
step's shapes (``batch_size x num_views`` views split over the CPU devices
as ``main.py`` splits them), forward pass, input gradient (not for the first
layer, whose input is data) and kernel gradient, exactly as the training step
computes them (``hmlc_jax.models.conv``: XLA's convolution, on CPU a patch-
matmul kernel gradient), pmapped, nothing else: no BatchNorm, ReLU, pool,
head, loss, augmentation or optimiser. The whole step of the same config is
timed in the same rounds (``bench_train_step.Case``), and a float32 matmul.
Prints a table and writes JSON: median ms of each, their GFLOP/s (XLA's
count) and the share of the step the convolutions take.
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


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--config", default="configs/hfashion_supcon.py")
  p.add_argument("--rounds", type=int, default=10, help="timed rounds")
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--batch_size", type=int, default=0, help="global batch; 0 keeps the config's")
  p.add_argument("--cpu_devices", type=int, default=0, help="0: as main.py")
  p.add_argument("--json", default="bench_conv_floor.json")
  return p.parse_args(argv)


class Convs:
  """The pmapped forward + gradients of the convolutions alone."""

  def __init__(self, shapes: list, views_per_device: int):
    import jax
    import jax.numpy as jnp
    from hmlc_jax.models.conv import conv_general_dilated
    from hmlc_jax.throughput import flops_of
    import numpy as np
    devices = jax.local_device_count()
    # Drawn by NumPy: threefry sampling compiles for seconds per shape on CPU.
    rng = np.random.default_rng(0)
    normal = lambda *shape: jnp.asarray(rng.standard_normal(shape, np.float32))
    self.shapes = shapes
    xs, ws, dys = [], [], []
    for side, c_in, c_out in shapes:
      xs.append(normal(devices, views_per_device, side, side, c_in))
      ws.append(normal(devices, 3, 3, c_in, c_out) * 0.1)
      dys.append(normal(devices, views_per_device, side, side, c_out))

    def conv(x, w, general):
      return general(x, w, (1, 1), "SAME",
                     dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def grads(general, ws, xs, dys):
      def total(ws, inner):
        xs_ = [xs[0]] + list(inner)
        return sum(jnp.vdot(conv(x, w, general), dy) for x, w, dy in zip(xs_, ws, dys))
      return jax.grad(total, argnums=(0, 1))(ws, xs[1:])   # no gradient for the data

    self.args = (ws, xs, dys)
    step = jax.pmap(lambda ws, xs, dys: grads(conv_general_dilated, ws, xs, dys))
    self.compiled = step.lower(*self.args).compile()
    counted = jax.pmap(lambda ws, xs, dys: grads(jax.lax.conv_general_dilated, ws, xs, dys))
    self.flops = flops_of(counted.lower(*self.args)) * devices
    self.times = []

  def call(self) -> float:
    import jax
    start = time.perf_counter()
    jax.block_until_ready(self.compiled(*self.args))
    return time.perf_counter() - start


def main(argv=None) -> None:
  args = parse_args(argv)
  from bench_train_step import IMAGE_SHAPES, Case, conv_shapes, load, measure
  config = load(args.config, args.batch_size)
  if config.model.backbone != "small_cnn":
    raise SystemExit("bench_conv_floor: small_cnn configs only")
  split_cpu(args.cpu_devices or cpu_devices_for(config.batch_size))
  import jax
  from hmlc_jax.throughput import Matmul
  side, channels = IMAGE_SHAPES[config.dataset.name]
  shapes = conv_shapes(config.model, side, channels)
  views = config.batch_size * config.num_views // jax.local_device_count()
  convs, step, matmul = Convs(shapes, views), Case(args.config, config), Matmul()
  measure([convs, step, matmul], args.rounds, args.warmup)
  conv_ms = 1e3 * statistics.median(convs.times)
  step_ms = 1e3 * statistics.median(step.times)
  matmul_rate = statistics.median(matmul.rates())
  conv_rate = convs.flops / conv_ms / 1e6
  layers = ", ".join(f"{c_in}->{c_out} at {s}x{s}" for s, c_in, c_out in shapes)
  print(f"| {args.config}, {views} views on each of {jax.local_device_count()} devices | "
        "ms (median) | GFLOP/s | of the matmul |")
  print("|---|---|---|---|")
  print(f"| convolutions alone ({layers}) | {conv_ms:.1f} | {conv_rate:.1f} | "
        f"{100 * conv_rate / matmul_rate:.1f}% |")
  print(f"| the whole training step | {step_ms:.1f} | | |")
  print(f"| float32 {matmul.size}x{matmul.size} matmul | "
        f"{1e3 * statistics.median(matmul.times):.1f} | {matmul_rate:.1f} | 100% |")
  print(f"convolutions: {100 * conv_ms / step_ms:.1f}% of the step")
  out = dict(config=args.config, layers=shapes, views_per_device=views,
             devices=jax.local_device_count(), conv_ms=conv_ms, conv_ms_all=[
                 1e3 * t for t in convs.times], conv_flops=convs.flops,
             conv_gflops_per_sec=conv_rate, step_ms=step_ms,
             step_ms_all=[1e3 * t for t in step.times], matmul_gflops_per_sec=matmul_rate,
             matmul_gflops_per_sec_rounds=matmul.rates(), conv_share_of_step=conv_ms / step_ms,
             date=time.strftime("%Y-%m-%d"), host=platform.node(), cpu_count=os.cpu_count(),
             jax=jax.__version__, rounds=args.rounds, warmup=args.warmup)
  with open(args.json, "w") as f:
    json.dump(out, f, indent=2)
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
