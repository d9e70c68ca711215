"""Forward and forward+grad cost of every loss beside the bare similarity matmul.

    python benchmarks/bench_losses.py [--quick] [--json PATH]

For each batch size B (V views, D dims, H levels) every loss is jitted,
compiled and warmed up, then timed over repeated rounds that call every case
once each (round-robin, so machine drift hits all alike); the median per case
is reported, each call ending in ``block_until_ready``. The floor is the ``N x N`` similarity
matmul (``N = B * V``): forward, and forward plus its two gradient matmuls.
Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from hmlc_jax import losses
from hmlc_jax.gmm import GMMConfig


def loss_fns(masks, block_rows=None):
  """name -> f(features, labels) returning a scalar; ``block_rows`` as in the losses."""
  b = block_rows
  return {
      "supcon": lambda x, y: losses.supcon_loss(x, y[:, -1], block_rows=b),
      "simclr": lambda x, y: losses.supcon_loss(x, block_rows=b),
      "hmc": lambda x, y: losses.hmlc_loss(x, y, kind="hmc", block_rows=b),
      "hce": lambda x, y: losses.hmlc_loss(x, y, kind="hce", block_rows=b),
      "hmce": lambda x, y: losses.hmlc_loss(x, y, kind="hmce", block_rows=b),
      "ghmlc": lambda x, y: losses.ghmlc_loss(x, y, gmm=GMMConfig(num_iters=10), block_rows=b),
      "ghmlc (gmm.kind=dp)": lambda x, y: losses.ghmlc_loss(x, y, gmm=GMMConfig(kind="dp"),
                                                            block_rows=b),
      "ahmlc": lambda x, y: losses.ahmlc_loss(x, masks, y, block_rows=b),
  }


def random_inputs(batch, views, dim, num_levels, seed=0):
  """Unit features [B, V, D], tree labels [B, H] (10 children per node) and
  sigmoid masks [B, V, H, D]."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, views, dim)).astype(np.float32)
  x = jnp.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True))
  leaves = rng.integers(0, 10 ** num_levels, size=batch)
  y = jnp.asarray(np.stack([leaves // 10 ** (num_levels - 1 - h)
                            for h in range(num_levels)], 1).astype(np.int32))
  masks = jax.nn.sigmoid(jnp.asarray(rng.normal(size=(batch, views, num_levels, dim)),
                                     jnp.float32))
  return x, y, masks


def similarity(x):
  rows = x.reshape(-1, x.shape[-1])
  return rows @ rows.T


def floor_fns(n):
  """The bare similarity matmul: forward, and forward plus its vector-Jacobian
  product with a fixed N x N cotangent (two more N x N x D matmuls)."""
  cotangent = jax.random.normal(jax.random.PRNGKey(0), (n, n))
  def with_grad(x):
    sim, vjp = jax.vjp(similarity, x)
    return sim, vjp(cotangent)
  return jax.jit(similarity), jax.jit(with_grad)


def interleaved_medians_ms(fns, args, repeats, warmup):
  """Median wall time of each function in ms, timed round-robin.

  Every function is compiled and warmed up first; then each round calls each
  function once, so slow drifts of the machine (other load, clock changes)
  affect all of them alike and the ratios between them stay fair.
  """
  for fn in fns.values():
    for _ in range(1 + warmup):
      jax.block_until_ready(fn(*args))
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(time.perf_counter() - start)
  return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def run(batch_sizes, levels, views, dim, repeats, warmup, only=None):
  rows = []
  for batch in batch_sizes:
    for num_levels in levels:
      x, y, masks = random_inputs(batch, views, dim, num_levels)
      forward, forward_grad = floor_fns(batch * views)
      fns = {("similarity matmul (floor)", "fwd"): forward,
             ("similarity matmul (floor)", "fwd+grad"): forward_grad}
      for name, fn in loss_fns(masks).items():
        if only and name not in only and name != "supcon":
          continue
        fns[(name, "fwd")] = jax.jit(lambda a, fn=fn: fn(a, y))
        fns[(name, "fwd+grad")] = jax.jit(jax.value_and_grad(lambda a, fn=fn: fn(a, y)))
      ms = interleaved_medians_ms(fns, (x,), repeats, warmup)
      for name in dict.fromkeys(n for n, _ in fns):
        rows.append(dict(loss=name, batch=batch, views=views, dim=dim, levels=num_levels,
                         forward_ms=ms[(name, "fwd")], forward_grad_ms=ms[(name, "fwd+grad")]))
        print(f"  B={batch:5d} H={num_levels} {name:27s} fwd {ms[(name, 'fwd')]:9.2f} ms  "
              f"fwd+grad {ms[(name, 'fwd+grad')]:9.2f} ms", file=sys.stderr, flush=True)
  return rows


def add_ratios(rows):
  """Each row's cost relative to supcon at the same B and H."""
  ref = {(r["batch"], r["levels"]): r for r in rows if r["loss"] == "supcon"}
  for r in rows:
    base = ref[(r["batch"], r["levels"])]
    r["forward_vs_supcon"] = r["forward_ms"] / base["forward_ms"]
    r["forward_grad_vs_supcon"] = r["forward_grad_ms"] / base["forward_grad_ms"]


def print_table(rows):
  header = (f"| {'loss':27s} | {'B':>5s} | H | {'fwd ms':>9s} | {'fwd+grad ms':>11s} "
            f"| {'fwd / supcon':>12s} | {'fwd+grad / supcon':>17s} |")
  print(header)
  print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
  for r in rows:
    print(f"| {r['loss']:27s} | {r['batch']:5d} | {r['levels']} | {r['forward_ms']:9.2f} "
          f"| {r['forward_grad_ms']:11.2f} | {r['forward_vs_supcon']:12.2f} "
          f"| {r['forward_grad_vs_supcon']:17.2f} |")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_sizes", default="256,1024,4096",
                      help="comma-separated B values (default: %(default)s)")
  parser.add_argument("--levels", default="2,3", help="comma-separated H values")
  parser.add_argument("--views", type=int, default=2)
  parser.add_argument("--dim", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=15, help="timed rounds")
  parser.add_argument("--warmup", type=int, default=2, help="untimed calls after compiling")
  parser.add_argument("--quick", action="store_true",
                      help="about a minute: B=256,1024, 5 repeats, 1 warm-up")
  parser.add_argument("--json", default="bench_losses.json", help="output JSON path")
  parser.add_argument("--losses", default="",
                      help="comma-separated loss names to time beside supcon (default: all)")
  args = parser.parse_args(argv)
  if args.quick:
    args.batch_sizes, args.repeats, args.warmup = "256,1024", 7, 1
  batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
  levels = [int(h) for h in args.levels.split(",")]
  only = set(filter(None, args.losses.split(",")))
  rows = run(batch_sizes, levels, args.views, args.dim, args.repeats, args.warmup, only)
  add_ratios(rows)
  print_table(rows)
  meta = dict(device=str(jax.devices()[0]), backend=jax.default_backend(),
              device_count=jax.device_count(), jax=jax.__version__,
              machine=platform.machine(), processor=platform.processor(),
              date=time.strftime("%Y-%m-%d"), repeats=args.repeats, warmup=args.warmup)
  with open(args.json, "w") as f:
    json.dump(dict(meta=meta, results=rows), f, indent=2)
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
