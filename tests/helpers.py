"""Shared test data (random batches with tree-shaped hierarchical labels) and
the XLA flags of the test processes."""
import numpy as np

# The tests compile with XLA:CPU's older loop emitters instead of its MLIR fusion
# emitters: the same operations in the same precision, compiled about a quarter
# faster (the suite is mostly compilation), the step itself 4-12% slower, which
# is why runs and benchmarks keep XLA's default (tests/conftest.py, docs/testing.md).
TEST_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false"


def xla_flags(devices=None) -> str:
  """``XLA_FLAGS`` for a test subprocess, with ``devices`` host devices if given."""
  count = f" --xla_force_host_platform_device_count={devices}" if devices else ""
  return TEST_XLA_FLAGS + count


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
