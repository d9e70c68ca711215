"""Synchronised BatchNorm: pmapped and shard_mapped train steps equal
single-device ones on the whole batch.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m tests.sync_batchnorm_parity

Prints one JSON object: per backbone, the largest difference (relative to the
largest magnitude of the reference) of the train-mode outputs and updated
``batch_stats`` of the model built with ``axis_name="batch"`` ("synced"),
the same without ``axis_name`` ("local": per-device statistics, which must
differ), and ("grad") the sum over devices of the per-device parameter
gradients of a dummy loss against the single-device gradient of the summed loss;
and ("shard_map") the synced model's outputs, statistics and parameter
gradient under ``jax.jit(jax.shard_map(...))`` with the default ``check_vma``,
where the gradient of the replicated parameters comes out summed.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from hmlc_jax.models import create_model
from tests.fixtures import section
from tests.helpers import init_variables

LOCAL_BATCH = 4
# PointNet's and the CIFAR ResNet-18's nn.BatchNorm (tests/test_models.py
# checks that every BatchNorm of every backbone gets the axis); small_cnn with
# its CPU kernels, whose BatchNorm + ReLU has a hand-written gradient
# (hmlc_jax.models.batchnorm).
INPUTS = {"pointnet": (32, 3), "small_cnn": (16, 16, 1), "resnet18": (16, 16, 3)}
AXIS = "batch"


def relative_difference(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def tree_difference(multi, single, reduce=None) -> float:
  """Largest difference over leaves; ``multi`` leaves have a leading device axis,
  compared device by device or, with ``reduce``, after reducing that axis."""
  pairs = list(zip(jax.tree.leaves(multi), jax.tree.leaves(single)))
  if reduce is not None:
    return max(relative_difference(reduce(np.asarray(m)), s) for m, s in pairs)
  return max(relative_difference(m[d], s) for m, s in pairs for d in range(len(m)))


def make_model(backbone: str, axis_name: str | None):
  config = section("model", backbone=backbone, width=4, projection_dim=8,
                   projection_hidden_dim=16, cpu_kernels=backbone == "small_cnn")
  return create_model(config, num_levels=2, attention_heads=True, axis_name=axis_name)


def train_forward(model):
  return lambda v, a: model.apply(v, a, train=True, mutable=["batch_stats"])


def dummy_loss(model):
  """params, batch_stats, inputs -> sum of squared embeddings plus mask sum."""
  def loss(params, stats, a):
    out, _ = train_forward(model)({"params": params, "batch_stats": stats}, a)
    return jnp.sum(out["embedding"] ** 2) + jnp.sum(out["masks"])
  return loss


def forward_difference(model, variables, split, out, stats) -> dict:
  m_out, m_stats = jax.pmap(train_forward(model), axis_name="batch")(variables, split)
  m_out = jax.tree.map(lambda a: np.asarray(a).reshape((-1,) + a.shape[2:]), m_out)
  return {"outputs": max(relative_difference(m_out[k], out[k]) for k in out),
          "batch_stats": tree_difference(m_stats, stats)}


def compare(backbone: str, x: np.ndarray, devices: int) -> dict:
  synced, local = make_model(backbone, AXIS), make_model(backbone, None)
  variables = init_variables(synced, x[:1], train=False)
  # Reference: one device, whole batch (train mode needs no axis_name there).
  out, stats = jax.jit(train_forward(local))(variables, x)
  replicated = jax.tree.map(lambda a: np.broadcast_to(a, (devices,) + a.shape), variables)
  split = x.reshape((devices, LOCAL_BATCH) + x.shape[1:])
  report = {"synced": forward_difference(synced, replicated, split, out, stats)}
  if backbone != "resnet18":     # the other two show that unsynchronised statistics differ
    report["local"] = forward_difference(local, replicated, split, out, stats)
  args = variables["params"], variables["batch_stats"]
  grad = jax.jit(jax.grad(dummy_loss(local)))(*args, x)
  m_grad = jax.pmap(jax.grad(dummy_loss(synced)), axis_name="batch")(
      replicated["params"], replicated["batch_stats"], split)
  report["grad"] = tree_difference(m_grad, grad, reduce=lambda g: g.sum(axis=0))
  report["shard_map"] = shard_map_difference(synced, variables, x, out, stats, grad, devices)
  return report


def shard_map_difference(model, variables, x, out, stats, grad, devices) -> dict:
  mesh = jax.make_mesh((devices,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
  x = jax.device_put(x, NamedSharding(mesh, P(AXIS)))
  forward = jax.shard_map(train_forward(model), mesh=mesh, in_specs=(P(), P(AXIS)),
                          out_specs=(P(AXIS), P()))
  s_out, s_stats = jax.jit(forward)(variables, x)
  gradient = jax.shard_map(jax.grad(lambda p, b, a: jax.lax.psum(dummy_loss(model)(p, b, a), AXIS)),
                           mesh=mesh, in_specs=(P(), P(), P(AXIS)), out_specs=P())
  s_grad = jax.jit(gradient)(variables["params"], variables["batch_stats"], x)
  return {"outputs": max(relative_difference(s_out[k], out[k]) for k in out),
          "batch_stats": max(relative_difference(a, b) for a, b in zip(
              jax.tree.leaves(s_stats), jax.tree.leaves(stats))),
          "grad": max(relative_difference(a, b) for a, b in zip(
              jax.tree.leaves(s_grad), jax.tree.leaves(grad)))}


def main():
  devices = jax.local_device_count()
  rng = np.random.default_rng(0)
  report = {"devices": devices}
  for backbone, shape in INPUTS.items():
    x = rng.normal(size=(devices * LOCAL_BATCH,) + shape)
    # A different mean per device, so per-device statistics would be wrong.
    x += np.repeat(np.arange(devices), LOCAL_BATCH).reshape((-1,) + (1,) * len(shape))
    report[backbone] = compare(backbone, x.astype(np.float32), devices)
  print(json.dumps(report))


if __name__ == "__main__":
  main()
