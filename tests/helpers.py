"""Shared test data: random batches with tree-shaped hierarchical labels."""
import numpy as np


def tree_labels(rng, batch, num_levels, branching=2):
  """int [batch, H] paths of a complete tree with `branching` children per node.

  Leaves are drawn at random (with repeats), so every level has collisions.
  """
  num_leaves = branching ** num_levels
  leaves = rng.integers(0, num_leaves, size=batch)
  cols = [leaves // branching ** (num_levels - 1 - h) for h in range(num_levels)]
  return np.stack(cols, axis=1).astype(np.int32)


def parent_local(labels, branching=2):
  """`tree_labels` with each level's ids local to the parent: children of every
  node are numbered 0..branching-1, so the same id repeats under different
  parents and only the path prefix tells classes apart."""
  local = np.array(labels, copy=True)
  local[:, 1:] %= branching
  return local


def unit_features(rng, batch, views, dim, dtype=np.float32):
  x = rng.normal(size=(batch, views, dim))
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(dtype)


def normal(seed, shape, dtype=np.float32):
  """A standard-normal jax array drawn by NumPy: ``jax.random.normal`` (threefry)
  takes about a second to compile per shape on CPU, which the suite pays per test."""
  import jax.numpy as jnp
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(dtype))


def init_variables(model, x, seed=0, **kwargs):
  """``model.init(key, x, **kwargs)`` as one compiled program with an rbg key, as
  `hmlc_jax.train_state` does (eager init compiles every initialiser alone)."""
  import functools
  import jax
  return jax.jit(functools.partial(model.init, **kwargs))(jax.random.key(seed, impl="rbg"), x)
