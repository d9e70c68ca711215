"""Evaluates every loss on a random hierarchical batch and prints a table.

The batch has tree-shaped labels (``branching`` children per node, ``H``
levels), L2-normalised features for SupCon/SimCLR/HMC/HCE/HMCE, raw
embeddings for G-HMLC and sigmoid masks (standing in for attention heads) for
A-HMLC. For each loss it reports the value, the gradient norm and the median
time of a jitted forward+backward call.
"""
from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hmlc_jax import hierarchy
from hmlc_jax.gmm import GMMConfig
from hmlc_jax.methods import METHODS


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first bad field, before anything compiles."""
  for field in ("batch_size", "num_views", "num_levels", "branching", "timing_repeats"):
    if config[field] < 1:
      raise ValueError(f"config.{field} must be at least 1, got {config[field]}")
  if config.embedding_dim < config.num_levels:
    raise ValueError(f"config.embedding_dim ({config.embedding_dim}) must be at least "
                     f"config.num_levels ({config.num_levels})")
  for field in ("temperature", "base_temperature"):
    if not config[field] > 0:
      raise ValueError(f"config.{field} must be positive, got {config[field]}")
  GMMConfig(**config.gmm)
  hierarchy.hmlc_penalties(config.num_levels, config.layer_penalty)
  hierarchy.level_weights(config.level_weights, config.num_levels)


def random_batch(config: ml_collections.ConfigDict):
  """Returns ``(embeddings [B, V, D], labels [B, H], masks [B, V, H, D])``."""
  rng = np.random.default_rng(config.seed)
  b, v, d, h = config.batch_size, config.num_views, config.embedding_dim, config.num_levels
  leaves = rng.integers(0, config.branching ** h, size=b)
  labels = np.stack([leaves // config.branching ** (h - 1 - k) for k in range(h)], axis=1)
  embeddings = rng.normal(size=(b, v, d)).astype(np.float32)
  masks = 1 / (1 + np.exp(-rng.normal(size=(b, v, h, d)))).astype(np.float32)
  return jnp.asarray(embeddings), jnp.asarray(labels, jnp.int32), jnp.asarray(masks)


def loss_functions(config: ml_collections.ConfigDict, labels, masks):
  """name -> f(embeddings) -> scalar, for every method of `hmlc_jax.methods.METHODS`,
  computed as training computes it (single device)."""
  temps = dict(temperature=config.temperature, base_temperature=config.base_temperature)
  loss = lambda method: lambda z: method.loss(config, z, masks, labels, temps)[0]
  return {name: loss(method) for name, method in METHODS.items()}


def evaluate(config: ml_collections.ConfigDict) -> list[dict]:
  """Value, gradient norm and forward+backward time of every loss."""
  embeddings, labels, masks = random_batch(config)
  rows = []
  for name, fn in loss_functions(config, labels, masks).items():
    step = jax.jit(jax.value_and_grad(fn))
    value, grad = jax.block_until_ready(step(embeddings))      # compiles
    times = []
    for _ in range(config.timing_repeats):
      start = time.perf_counter()
      jax.block_until_ready(step(embeddings))
      times.append(time.perf_counter() - start)
    rows.append(dict(loss=name, value=float(value),
                     grad_norm=float(jnp.linalg.norm(grad)),
                     ms=1e3 * statistics.median(times)))
  return rows


def run(config: ml_collections.ConfigDict) -> list[dict]:
  """Prints the table of ``evaluate(config)`` and returns its rows."""
  check_config(config)
  print(f"batch: B={config.batch_size} V={config.num_views} D={config.embedding_dim} "
        f"H={config.num_levels} on {jax.devices()[0].platform} "
        f"({jax.device_count()} device{'s' if jax.device_count() > 1 else ''})")
  rows = evaluate(config)
  print(f"{'loss':8s} {'value':>10s} {'|grad|':>10s} {'fwd+grad ms':>12s}")
  for r in rows:
    print(f"{r['loss']:8s} {r['value']:10.4f} {r['grad_norm']:10.4f} {r['ms']:12.2f}")
  return rows
