"""Memory of each loss's value-and-gradient, dense versus blockwise, from XLA.

    python benchmarks/bench_loss_memory.py [--batch 8192] [--block_rows 1024]
        [--losses supcon,hmce,ghmlc,ahmlc] [--json PATH]

Every loss's ``value_and_grad`` at global batch ``--batch`` (``N = batch x
views`` rows) is compiled, not run, once dense and once with
``block_rows=R``; XLA's memory analysis of the compiled program gives the
temporaries (the ``N x N`` similarities and everything else the gradient
keeps) and the arguments. Compiling needs no memory of that size, so this runs
on any host; on an accelerator, compile for it (``JAX_PLATFORMS=tpu``) to read
that backend's figures. A 16 GiB TPU core fits a program whose arguments,
outputs and temporaries sum to less than that.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from benchmarks.bench_losses import loss_fns, random_inputs  # noqa: E402

MIB = 2 ** 20


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=int, default=8192, help="global batch B (N = B x views)")
  p.add_argument("--views", type=int, default=2)
  p.add_argument("--dim", type=int, default=128)
  p.add_argument("--levels", type=int, default=2)
  p.add_argument("--block_rows", type=int, default=1024, help="anchor rows per block")
  p.add_argument("--losses", default="supcon,hmce,ghmlc,ahmlc")
  p.add_argument("--json", default="bench_loss_memory.json", help="output JSON path")
  args = p.parse_args(argv)
  args.losses = [name for name in args.losses.split(",") if name]
  known = list(loss_fns(masks=None))
  for name in args.losses:
    if name not in known:
      p.error(f"unknown loss {name!r}; choose from {', '.join(known)}")
  return args


def compiled_memory(fn, x, y) -> dict:
  """XLA's memory analysis (MiB) of ``value_and_grad(fn)`` compiled for ``x``."""
  start = time.perf_counter()
  compiled = jax.jit(jax.value_and_grad(lambda a: fn(a, y))).lower(x).compile()
  stats = compiled.memory_analysis()
  temp, arguments = stats.temp_size_in_bytes / MIB, stats.argument_size_in_bytes / MIB
  outputs = stats.output_size_in_bytes / MIB
  return dict(temp_mib=temp, argument_mib=arguments, output_mib=outputs,
              total_mib=temp + arguments + outputs, compile_s=time.perf_counter() - start)


def main(argv=None) -> None:
  args = parse_args(argv)
  x, y, masks = random_inputs(args.batch, args.views, args.dim, args.levels)
  dense_fns, block_fns = loss_fns(masks), loss_fns(masks, block_rows=args.block_rows)
  rows = []
  for name in args.losses:
    dense = compiled_memory(dense_fns[name], x, y)
    blocked = compiled_memory(block_fns[name], x, y)
    rows.append(dict(loss=name, batch=args.batch, rows=args.batch * args.views,
                     block_rows=args.block_rows, dense=dense, blockwise=blocked))
    print(f"  {name}: temporaries {dense['temp_mib']:.0f} -> {blocked['temp_mib']:.0f} MiB",
          file=sys.stderr, flush=True)
  print(f"| loss | N | dense temporaries MiB | R = {args.block_rows} temporaries MiB | "
        "dense total MiB | blockwise total MiB | shrink |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    d, b = r["dense"], r["blockwise"]
    print(f"| {r['loss']} | {r['rows']} | {d['temp_mib']:.0f} | {b['temp_mib']:.0f} | "
          f"{d['total_mib']:.0f} | {b['total_mib']:.0f} | {d['temp_mib'] / b['temp_mib']:.1f}x |")
  meta = dict(platform=jax.devices()[0].platform, device=jax.devices()[0].device_kind,
              jax=jax.__version__, date=time.strftime("%Y-%m-%d"), views=args.views,
              dim=args.dim, levels=args.levels)
  with open(args.json, "w") as f:
    json.dump(dict(meta=meta, results=rows), f, indent=2)
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
