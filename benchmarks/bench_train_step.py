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
analysis of the step as autodiff writes it (all devices; the CPU patch kernel
gradient's chunk loop would be counted once); ``mfu`` divides the achieved
FLOP/s by the devices' dense bf16 peak (GPU/TPU only; None on CPU, as is
``peak_memory_bytes`` where the device reports no memory statistics).

On CPU there is no data-sheet peak, so the run also times a jitted float32
``--matmul_size`` square matmul (all cores) in every round, beside the steps,
and reports ``matmul_rate``: examples/s x views x forward+backward FLOPs per
view of the backbone and heads (XLA's count for the model alone, without
augmentation, loss or optimiser) over that matmul's FLOP/s, the median over
rounds of each round's ratio (this shared machine's matmul rate drifts by a
third within minutes, and more than the memory-bound step does). ``--layers``
adds a per-layer table (forward+backward of each convolution block of a
``small_cnn`` at the step's batch of views).
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

NUM_BATCHES = 4
XLA_CONV_GRAD = "#xla_conv_grad"


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--configs", required=True,
                 help="comma-separated config files, each FILE.py[:variant] with optional "
                      "overrides @FIELD=VALUE[+FIELD=VALUE] and an optional suffix "
                      f"{XLA_CONV_GRAD} (XLA's own conv kernel gradients, the baseline of "
                      "hmlc_jax.models.conv), e.g. configs/hfashion_ghmlc.py#xla_conv_grad")
  p.add_argument("--batch_size", type=int, default=0, help="global batch; 0 keeps each config's")
  p.add_argument("--steps", type=int, default=10, help="timed rounds")
  p.add_argument("--warmup", type=int, default=2, help="untimed rounds after compiling")
  p.add_argument("--cpu_devices", type=int, default=0,
                 help="CPU only: XLA host devices (0: as main.py, one per core, at most 8)")
  p.add_argument("--json", default="bench_train_step.json", help="output JSON path")
  p.add_argument("--matmul_size", type=int, default=2048,
                 help="side of the float32 matmul that gives the CPU reference rate")
  p.add_argument("--layers", action="store_true",
                 help="also time each conv block of a small_cnn forward+backward")
  return p.parse_args(argv)


IMAGE_SHAPES = {"cifar100": (32, 3), "hdigits": (32, 1), "hfashion": (28, 1)}


def label_tree(name: str):
  """(classes per level, int ``[num_leaves, H]`` paths of every leaf) of a data set."""
  import numpy as np
  if name == "hfashion":
    from hmlc_jax.data.hfashion import hierarchy_table
    return (2, 6, 10), hierarchy_table()
  classes = {"cifar100": (20, 100), "modelnet40": (9, 40), "shapes3d": (4, 16)}.get(
      name, (10, 100))
  fine = np.arange(classes[1])
  return classes, np.stack([fine * classes[0] // classes[1], fine], axis=1)


def random_dataset(config, size: int, seed: int = 0):
  """A `Dataset` of random inputs with the shape, kind and label tree of
  ``config.dataset`` (uint8 images or unit-ball point clouds)."""
  import numpy as np
  from hmlc_jax.data import Dataset
  name = config.dataset.name
  rng = np.random.default_rng(seed)
  classes, paths = label_tree(name)
  if name in ("modelnet40", "shapes3d"):
    kind = "points"
    x = rng.normal(size=(size, config.dataset.num_points, 3)).astype(np.float32)
    x /= np.abs(x).max()
  else:
    side, channels = IMAGE_SHAPES.get(name, (config.dataset.get("canvas", 56), 1))
    kind = "image"
    x = rng.integers(0, 256, size=(size, side, side, channels), dtype=np.uint8)
  y = paths[rng.integers(0, len(paths), size=size)].astype(np.int32)
  return Dataset(name=name, kind=kind, train_x=x, train_y=y, test_x=x[:1], test_y=y[:1],
                 num_classes=classes, level_names=tuple(f"level{h}" for h in range(len(classes))))


class Case:
  """One config's compiled step, live state and host batches."""

  def __init__(self, path: str, config, xla_conv_grad: bool = False):
    import jax
    from hmlc_jax import step as step_fn, train_state
    from hmlc_jax.data import augment, pipeline
    from hmlc_jax.throughput import flops_of, model_flops_per_view, xla_conv_grads
    self.path, self.config = path, config
    data = random_dataset(config, NUM_BATCHES * config.batch_size)
    with config.unlocked():
      config.num_train_steps = 10 ** 6          # a schedule that stays near its peak
    run = train_state.setup(config, data, axis_name=step_fn.AXIS)
    model, state, schedule = run.model, run.state, run.schedule
    self.batches = [pipeline.device_batch(data, config, s) for s in range(NUM_BATCHES)]
    self.state = step_fn.replicate(state)
    step = step_fn.pmapped_train_step(model, config, data.kind, schedule)
    start = time.perf_counter()
    with xla_conv_grads(xla_conv_grad):
      self.compiled = step.lower(self.state, self.batches[0]).compile()
    self.compile_s = time.perf_counter() - start
    # XLA's count of the step as autodiff writes it: the patch kernel gradient's
    # chunk loop would be counted once, not once per chunk.
    with xla_conv_grads():
      fresh = step_fn.pmapped_train_step(model, config, data.kind, schedule)   # a new trace
      self.flops = flops_of(fresh.lower(self.state, self.batches[0])) * jax.local_device_count()
    views = jax.numpy.asarray(augment.prepare_eval(
        data.train_x[:config.batch_size * config.num_views // jax.local_device_count()],
        data.kind))
    self.model_flops = model_flops_per_view(
        run.eval_model, {"params": state.params, "batch_stats": state.batch_stats}, views)
    self.times, self.calls = [], 0

  def call(self) -> float:
    import jax
    start = time.perf_counter()
    self.state, metrics = self.compiled(self.state, self.batches[self.calls % NUM_BATCHES])
    jax.block_until_ready((self.state, metrics))
    self.calls += 1
    return time.perf_counter() - start


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


def summary(case, matmul) -> dict:
  """The config's row; ``matmul`` is the CPU reference (`hmlc_jax.throughput.Matmul`) or None."""
  import jax
  from hmlc_jax.throughput import peak_flops
  devices = jax.local_devices()
  step_s = statistics.median(case.times)
  peak = peak_flops(devices[0])
  achieved = case.flops / step_s if case.flops else None
  view_flops = case.config.batch_size * case.config.num_views * (case.model_flops or 0)
  model_rate = view_flops / step_s if view_flops else None
  matmul_rate = matmul_rounds = ratios = None
  if matmul and matmul.times:
    matmul_rounds = matmul.rates()
    matmul_rate = statistics.median(matmul_rounds)
    if view_flops:    # each round's step against the same round's matmul
      ratios = [view_flops / t / 1e9 / m for t, m in zip(case.times, matmul_rounds)]
  return dict(examples_per_sec=case.config.batch_size / step_s, step_ms=1e3 * step_s,
              model_flops_per_view=case.model_flops,
              model_gflops_per_sec=model_rate / 1e9 if model_rate else None,
              matmul_gflops_per_sec=matmul_rate, matmul_gflops_per_sec_rounds=matmul_rounds,
              matmul_rate=statistics.median(ratios) if ratios else None,
              matmul_rate_rounds=ratios,
              compile_s=case.compile_s, peak_memory_bytes=peak_memory(devices[0]),
              flops_per_step=case.flops,
              mfu=achieved / (peak * len(devices)) if achieved and peak else None,
              method=case.config.method, backbone=case.config.model.backbone,
              dtype=case.config.model.dtype, batch_size=case.config.batch_size,
              step_ms_all=[1e3 * t for t in case.times])


def print_table(results: dict) -> None:
  base = next((r for r in results.values() if r["method"] == "supcon"), None)
  print("| config | method | batch | examples/s | step ms | vs supcon | compile s | "
        "peak memory | GFLOP/step | model GFLOP/s | of matmul | MFU |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for path, r in results.items():
    ratio = f"{r['step_ms'] / base['step_ms']:.3f}" if base else "n/a"
    memory = f"{r['peak_memory_bytes'] / 2 ** 30:.2f} GiB" if r["peak_memory_bytes"] else "n/a"
    gflops = f"{r['flops_per_step'] / 1e9:.4g}" if r["flops_per_step"] else "n/a"
    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "n/a"
    model = f"{r['model_gflops_per_sec']:.1f}" if r["model_gflops_per_sec"] else "n/a"
    share = f"{100 * r['matmul_rate']:.1f}%" if r["matmul_rate"] else "n/a"
    print(f"| {path} | {r['method']} | {r['batch_size']} | {r['examples_per_sec']:.1f} | "
          f"{r['step_ms']:.1f} | {ratio} | {r['compile_s']:.1f} | {memory} | {gflops} | "
          f"{model} | {share} | {mfu} |")


def conv_shapes(model, side: int, channels: int) -> list:
  """``(side, c_in, c_out)`` of every convolution of a ``small_cnn`` config's
  model section on ``side x side x channels`` images, in order (after the
  space-to-depth stem, as `hmlc_jax.models.small_cnn.SmallCNN` runs them)."""
  s = model.space_to_depth
  side, c_in, shapes = side // s, channels * s * s, []
  for stage in range(3):
    for _ in range(model.convs_per_stage):
      c_out = model.width * 2 ** stage
      shapes.append((side, c_in, c_out))
      c_in = c_out
    if stage or s == 1:
      side //= 2
  return shapes


def layer_table(config, views: int, repeats: int = 5) -> list:
  """Forward+backward ms and GFLOP/s of each conv block of a small_cnn, one device,
  with XLA's kernel gradient and with the library's (patch matmul on CPU)."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from hmlc_jax.models import layers
  from hmlc_jax.throughput import flops_of, xla_conv_grads
  side, channels = IMAGE_SHAPES.get(config.dataset.name, (32, 1))
  rows = []
  for i, (side, c_in, c_out) in enumerate(conv_shapes(config.model, side, channels)):

    class Block(nn.Module):
      @nn.compact
      def __call__(self, x):
        x = layers.conv(c_out, 3, 1, jnp.float32, "conv")(x)
        return nn.relu(layers.batch_norm(True, None, jnp.float32)(name="bn")(x))

    x = jnp.ones((views, side, side, c_in), jnp.float32)
    block = Block()
    variables = block.init(jax.random.key(0), x)

    def loss(params, x, block=block, variables=variables):
      out, _ = block.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                           mutable=["batch_stats"])
      return jnp.sum(out)

    # The first layer's input is data: no input gradient, as in training.
    argnums = (0, 1) if i else 0
    row = dict(layer=f"conv {c_in}->{c_out} at {side}x{side}")
    for name, xla in (("xla", True), ("patches", False)):
      with xla_conv_grads(xla):
        compiled = jax.jit(jax.grad(loss, argnums=argnums)).lower(
            variables["params"], x).compile()
      jax.block_until_ready(compiled(variables["params"], x))
      times = []
      for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(variables["params"], x))
        times.append(time.perf_counter() - start)
      ms = 1e3 * statistics.median(times)
      if name == "xla":
        flops = flops_of(compiled)
      row[f"{name}_ms"] = ms
      row[f"{name}_gflops_per_sec"] = flops / ms / 1e6 if flops else None
    rows.append(row)
  rate = lambda r, k: f"{r[k]:.1f}" if r[k] else "n/a"
  print(f"| layer (forward+backward, {views} views, one device) | XLA kernel grad ms | "
        "GFLOP/s | patch kernel grad ms | GFLOP/s |")
  print("|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['layer']} | {r['xla_ms']:.1f} | {rate(r, 'xla_gflops_per_sec')} | "
          f"{r['patches_ms']:.1f} | {rate(r, 'patches_gflops_per_sec')} |")
  return rows


def load(spec: str, batch_size: int):
  """``FILE.py[:variant][@FIELD=VALUE[+FIELD=VALUE...]][#xla_conv_grad]`` as a config."""
  from hmlc_jax.ablation import apply_overrides, parse_variant
  from hmlc_jax.sweeps import config_from_file
  spec = spec.removesuffix(XLA_CONV_GRAD)
  path, _, overrides = spec.partition("@")
  config = config_from_file(path)
  if overrides:
    apply_overrides(config, parse_variant(overrides))
  if batch_size:
    config.batch_size = batch_size
  return config


def main(argv=None) -> None:
  args = parse_args(argv)
  specs = [s for s in args.configs.split(",") if s]
  first = load(specs[0], args.batch_size)
  split_cpu(args.cpu_devices or cpu_devices_for(first.batch_size))   # before jax starts
  import jax
  from hmlc_jax.throughput import Matmul
  cases = []
  for spec in specs:
    case = Case(spec, load(spec, args.batch_size), spec.endswith(XLA_CONV_GRAD))
    print(f"compiled {spec} in {case.compile_s:.1f} s", file=sys.stderr, flush=True)
    cases.append(case)
  matmul = Matmul(args.matmul_size) if jax.devices()[0].platform == "cpu" else None
  measure(cases + [matmul] if matmul else cases, args.steps, args.warmup)
  results = {case.path: summary(case, matmul) for case in cases}
  print_table(results)
  if matmul:
    rates = matmul.rates()
    print(f"float32 {args.matmul_size}x{args.matmul_size} matmul: {statistics.median(rates):.1f} "
          f"GFLOP/s (median of the rounds; {min(rates):.1f}-{max(rates):.1f})")
  if args.layers:
    results["layers"] = layer_table(first, first.batch_size * first.num_views)
  meta = dict(device=jax.devices()[0].device_kind, platform=jax.devices()[0].platform,
              devices=jax.local_device_count(), jax=jax.__version__, host=platform.node(),
              cpu_count=os.cpu_count(), steps=args.steps, warmup=args.warmup,
              date=time.strftime("%Y-%m-%d"))
  with open(args.json, "w") as f:      # one object per config path
    json.dump({path: dict(r, **meta) if isinstance(r, dict) else r
               for path, r in results.items()}, f, indent=2)
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
