"""Single- vs multi-device parity of every loss in the three parallel styles;
run with several XLA devices.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m tests.multidevice_parity

Every case is a loss of ``x @ w`` (``w`` a replicated ``[D, D]`` parameter),
so both gradients users take are checked: with respect to the embeddings'
inputs ``x`` (rows split over the devices) and to the parameter ``w``. The
styles:

- ``pmap``: ``jax.pmap`` with ``axis_name``; parameter gradients summed with
  ``psum`` (as the training loop does);
- ``shard_map``: ``jax.jit(jax.shard_map(...))`` over a 1-D mesh with the
  default ``check_vma=True``, ``axis_name`` the mesh axis, the loss returned
  replicated (``out_specs=P()``), no explicit gradient sum;
- ``jit``: plain ``jax.jit`` with ``axis_name=None`` over inputs sharded
  across the mesh (``NamedSharding`` on a mesh of ``AxisType.Auto``), XLA
  partitioning everything.

Prints one JSON object: per case and style the difference of the loss and of
each gradient from the single-device values on the whole batch, relative to
the largest magnitude of the reference.
"""
import json

import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import numpy as np

from hmlc_jax import losses
from hmlc_jax.gmm import GMMConfig
from tests.helpers import tree_labels, unit_features

LOCAL_BATCH, VIEWS, DIM = 6, 2, 16
LEVELS = (3,)
AXIS = "batch"
STYLES = ("pmap", "shard_map", "jit")
# hmc and hce are hmlc_loss's other combinations of the same level terms (hmce
# holds both): one style checks them, to keep the compiles few.
PMAP_ONLY = ("hmc", "hce")


def _unit(z):
  return losses.l2_normalize(z)[0]


def cases():
  """name -> loss(embeddings, labels, masks, axis_name)."""
  return {
      "simclr": lambda z, y, m, ax: losses.supcon_loss(_unit(z), axis_name=ax),
      "supcon": lambda z, y, m, ax: losses.supcon_loss(_unit(z), y[:, -1], axis_name=ax),
      "hmc": lambda z, y, m, ax: losses.hmlc_loss(_unit(z), y, kind="hmc", axis_name=ax),
      "hce": lambda z, y, m, ax: losses.hmlc_loss(_unit(z), y, kind="hce", axis_name=ax),
      "hmce": lambda z, y, m, ax: losses.hmlc_loss(_unit(z), y, kind="hmce", axis_name=ax),
      # Parity does not depend on the EM iteration count; 3 keeps compiles short.
      "ghmlc": lambda z, y, m, ax: losses.ghmlc_loss(
          z, y, gmm=GMMConfig(num_iters=3), full_weight=0.5, axis_name=ax),
      "ghmlc_batch_soft": lambda z, y, m, ax: losses.ghmlc_loss(
          z, y, gmm=GMMConfig(fit_over="batch", mask_grad="soft", num_iters=3), axis_name=ax),
      "ghmlc_dp": lambda z, y, m, ax: losses.ghmlc_loss(
          z, y, gmm=GMMConfig(kind="dp", fit_over="batch", max_components=4, dp_num_iters=20),
          axis_name=ax),
      "ahmlc": lambda z, y, m, ax: losses.ahmlc_loss(z, m, y, enforce_hierarchy=True,
                                                   axis_name=ax),
  }


def relative_difference(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def all_cases(axis_name, names=None):
  """One function of every case's (value, (grad w, grad x)): one compile per style."""
  def run(w, x, y, m):
    out = {}
    for name, fn in cases().items():
      if names is not None and name not in names:
        continue
      loss = lambda w_, x_, fn=fn: fn(jnp.einsum("bvd,de->bve", x_, w_), y, m, axis_name)
      out[name] = jax.value_and_grad(loss, argnums=(0, 1))(w, x)
    return out
  return run


def run_pmap(devices, w, x, y, m):
  split = lambda a: a.reshape((devices, LOCAL_BATCH) + a.shape[1:])
  def step(w, x, y, m):
    out = all_cases(AXIS)(w, x, y, m)
    return {k: (v, (jax.lax.psum(gw, AXIS), gx)) for k, (v, (gw, gx)) in out.items()}
  out = jax.pmap(step, axis_name=AXIS, in_axes=(None, 0, 0, 0))(w, split(x), split(y), split(m))
  return {k: (v[0], (gw[0], np.asarray(gx).reshape(x.shape))) for k, (v, (gw, gx)) in out.items()}


def cases_of(style):
  return [name for name in cases() if style == "pmap" or name not in PMAP_ONLY]


def run_shard_map(mesh, w, x, y, m):
  names = cases_of("shard_map")
  specs = {k: (P(), (P(), P(AXIS))) for k in names}
  fn = jax.shard_map(all_cases(AXIS, names), mesh=mesh,
                     in_specs=(P(), P(AXIS), P(AXIS), P(AXIS)), out_specs=specs)
  return jax.jit(fn)(*_placed(mesh, w, x, y, m))


def run_jit(mesh, w, x, y, m):
  return jax.jit(all_cases(None, cases_of("jit")))(*_placed(mesh, w, x, y, m))


def _placed(mesh, w, x, y, m):
  rows = NamedSharding(mesh, P(AXIS))
  return (jax.device_put(w, NamedSharding(mesh, P())), jax.device_put(x, rows),
          jax.device_put(y, rows), jax.device_put(m, rows))


def main():
  devices = jax.local_device_count()
  # A classic mesh: XLA chooses the shardings inside jit (AxisType.Auto).
  mesh = jax.make_mesh((devices,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
  report = {"devices": devices}
  # One level count: the collectives do not depend on it (the oracle tests in
  # tests/test_losses.py cover H = 2, 3, 4 on one device).
  for num_levels in LEVELS:
    rng = np.random.default_rng(num_levels)
    batch = devices * LOCAL_BATCH
    x = unit_features(rng, batch, VIEWS, DIM)
    y = tree_labels(rng, batch, num_levels)
    m = rng.uniform(size=(batch, VIEWS, num_levels, DIM)).astype(np.float32)
    w = (np.eye(DIM) + 0.1 * rng.standard_normal((DIM, DIM))).astype(np.float32)
    one = jax.devices()[0]                      # the whole batch on one device
    single = jax.jit(all_cases(None))(*(jax.device_put(a, one) for a in (w, x, y, m)))
    multi = {"pmap": run_pmap(devices, w, x, y, m), "shard_map": run_shard_map(mesh, w, x, y, m),
             "jit": run_jit(mesh, w, x, y, m)}
    for name, (value, (grad_w, grad_x)) in single.items():
      for style in STYLES:
        if name not in cases_of(style):
          continue
        v, (gw, gx) = multi[style][name]
        report[f"{name}/{style}/H={num_levels}"] = {
            "loss": relative_difference(v, value),
            "grad_w": relative_difference(gw, grad_w),
            "grad_x": relative_difference(gx, grad_x),
            "value": float(value),
        }
  print(json.dumps(report))


if __name__ == "__main__":
  main()
