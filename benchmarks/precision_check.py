"""The losses at the backend's default matmul precision against precision=HIGHEST.

    python benchmarks/precision_check.py --json=precision.json

The losses compute their similarity and logit matmuls at
``precision=HIGHEST`` (``hmlc_jax.losses``). On a TPU the default is bfloat16
passes and on recent NVIDIA GPUs TF32, so this script measures what that
choice buys on the device it runs on: every loss and its gradient on a random
hierarchical batch, once as shipped and once with the losses' and the GMM's
contractions at the backend's default precision, each against a float64
reference computed by the same code on the host CPU (``jax_enable_x64``). It prints a table and writes a JSON file with the largest
absolute error of the loss and the largest relative error of the gradient per
loss and precision, and the time of one value-and-gradient call. On a CPU both
precisions give the same numbers.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)   # the float64 reference; the runs stay float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from hmlc_jax import gmm, losses  # noqa: E402


def loss_cases(masks):
  unit = lambda z: losses.l2_normalize(z)[0]
  return {
      "supcon": lambda z, y: losses.supcon_loss(unit(z), y[:, -1], temperature=0.1),
      "hmce": lambda z, y: losses.hmlc_loss(unit(z), y, kind="hmce", temperature=0.1),
      "ghmlc": lambda z, y: losses.ghmlc_loss(z, y, temperature=0.1),
      "ahmlc": lambda z, y: losses.ahmlc_loss(z, masks.astype(z.dtype), y, temperature=0.1),
  }


def set_precision(precision):
  """The precision of the losses' and the GMM's contractions (traced after this)."""
  losses._EXACT = precision  # pylint: disable=protected-access
  gmm._EXACT = precision     # pylint: disable=protected-access


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=int, default=1024)
  p.add_argument("--dim", type=int, default=128)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--json", default="")
  args = p.parse_args()

  rng = np.random.default_rng(0)
  fine = rng.integers(0, 100, args.batch)
  y = np.stack([fine // 5, fine], axis=1).astype(np.int32)
  z = rng.standard_normal((args.batch, 2, args.dim))
  masks = rng.uniform(size=(args.batch, 2, 2, args.dim))
  cpu = jax.devices("cpu")[0]
  device = jax.devices()[0]
  report = {"command": f"python benchmarks/precision_check.py --batch={args.batch} "
                       f"--dim={args.dim}", "date": time.strftime("%Y-%m-%d"),
            "backend": jax.default_backend(), "device": device.device_kind,
            "host": platform.processor() or platform.machine(), "jax": jax.__version__,
            "losses": {}}

  set_precision(jax.lax.Precision.HIGHEST)
  reference = {}
  for name, fn in loss_cases(jnp.asarray(masks, jnp.float64)).items():
    args64 = (jax.device_put(jnp.asarray(z, jnp.float64), cpu), jax.device_put(y, cpu))
    value, grad = jax.jit(jax.value_and_grad(fn))(*args64)
    reference[name] = (float(value), np.asarray(grad))

  print(f"{'loss':<8} {'precision':<10} {'|loss error|':>13} {'grad rel. error':>16} {'ms':>8}")
  for precision in ("highest", "default"):
    set_precision(jax.lax.Precision.HIGHEST if precision == "highest" else None)
    cases = loss_cases(jnp.asarray(masks, jnp.float32))
    for name, fn in cases.items():
      step = jax.jit(jax.value_and_grad(fn))
      inputs = (jax.device_put(jnp.asarray(z, jnp.float32), device), jax.device_put(y, device))
      value, grad = jax.block_until_ready(step(*inputs))
      times = []
      for _ in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(*inputs))
        times.append(1e3 * (time.perf_counter() - start))
      ref_value, ref_grad = reference[name]
      entry = {"loss_abs_error": abs(float(value) - ref_value),
               "grad_rel_error": float(np.max(np.abs(np.asarray(grad, np.float64) - ref_grad))
                                       / np.max(np.abs(ref_grad))),
               "ms": statistics.median(times), "loss": float(value)}
      report["losses"].setdefault(name, {})[precision] = entry
      print(f"{name:<8} {precision:<10} {entry['loss_abs_error']:>13.2e} "
            f"{entry['grad_rel_error']:>16.2e} {entry['ms']:>8.2f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
