"""Single- vs multi-device parity of every loss; run with several XLA devices.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m tests.multidevice_parity

Prints one JSON object: for each case the relative difference of the pmapped
loss and of its gradient from the single-device values on the whole batch.
"""
import json

import jax
import numpy as np

from hmlc_jax import losses
from hmlc_jax.gmm import GMMConfig
from tests.helpers import tree_labels, unit_features

LOCAL_BATCH, VIEWS, DIM = 6, 2, 16
LEVELS = (3,)


def cases(num_levels, masks):
  """name -> loss(features, labels, masks, axis_name)."""
  return {
      "simclr": lambda x, y, m, ax: losses.supcon_loss(x, axis_name=ax),
      "supcon": lambda x, y, m, ax: losses.supcon_loss(x, y[:, -1], axis_name=ax),
      "hmc": lambda x, y, m, ax: losses.hmlc_loss(x, y, kind="hmc", axis_name=ax),
      "hce": lambda x, y, m, ax: losses.hmlc_loss(x, y, kind="hce", axis_name=ax),
      "hmce": lambda x, y, m, ax: losses.hmlc_loss(x, y, kind="hmce", axis_name=ax),
      # Parity does not depend on the EM iteration count; 3 keeps compiles short.
      "ghmlc": lambda x, y, m, ax: losses.ghmlc_loss(
          x, y, gmm=GMMConfig(num_iters=3), full_weight=0.5, axis_name=ax),
      "ghmlc_batch_soft": lambda x, y, m, ax: losses.ghmlc_loss(
          x, y, gmm=GMMConfig(fit_over="batch", mask_grad="soft", num_iters=3), axis_name=ax),
      "ghmlc_dp": lambda x, y, m, ax: losses.ghmlc_loss(
          x, y, gmm=GMMConfig(kind="dp", fit_over="batch", max_components=4, dp_num_iters=20),
          axis_name=ax),
      "ahmlc": lambda x, y, m, ax: losses.ahmlc_loss(x, m, y, enforce_hierarchy=True,
                                                   axis_name=ax),
  }


def relative_difference(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def all_cases(cases, axis_name):
  """One function of every case's (value, gradient): one compile, not one per case."""
  return lambda x, y, m: {name: jax.value_and_grad(lambda a, fn=fn: fn(a, y, m, axis_name))(x)
                          for name, fn in cases.items()}


def main():
  devices = jax.local_device_count()
  report = {"devices": devices}
  # One level count: the collectives do not depend on it (the oracle tests in
  # tests/test_losses.py cover H = 2, 3, 4 on one device).
  for num_levels in LEVELS:
    rng = np.random.default_rng(num_levels)
    batch = devices * LOCAL_BATCH
    x = unit_features(rng, batch, VIEWS, DIM)
    y = tree_labels(rng, batch, num_levels)
    m = rng.uniform(size=(batch, VIEWS, num_levels, DIM)).astype(np.float32)
    split = lambda a: a.reshape((devices, LOCAL_BATCH) + a.shape[1:])
    losses_of = cases(num_levels, m)
    single = jax.jit(all_cases(losses_of, None))(x, y, m)      # the whole batch on one device
    multi = jax.pmap(all_cases(losses_of, "batch"), axis_name="batch")(split(x), split(y),
                                                                         split(m))
    for name, (value, grad) in single.items():
      values, grads = multi[name]
      report[f"{name}/H={num_levels}"] = {
          "loss": relative_difference(values, np.full(devices, value)),
          "grad": relative_difference(np.asarray(grads).reshape(grad.shape), grad),
          "value": float(value),
      }
  print(json.dumps(report))


if __name__ == "__main__":
  main()
