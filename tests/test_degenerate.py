"""Property-based fuzzing: every loss stays finite, in value and gradient, on
the degenerate inputs DESIGN.md lists (constant or all-zero embeddings,
duplicated rows, one-class batches, anchors without positives, one-view
batches, B = 1, values scaled by 1e-6 or 1e6, masks that empty a level)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmlc_jax import losses
from hmlc_jax.gmm import GMMConfig

DIM = 8
EXAMPLES = 250
SHAPES = [(1, 1, 2), (1, 2, 3), (5, 1, 2), (5, 2, 3)]      # (batch, views, levels)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

LOSSES = {
    "simclr": lambda z, y, m, o: losses.supcon_loss(z, **o),
    "supcon": lambda z, y, m, o: losses.supcon_loss(z, y[:, -1], **o),
    "hmc": lambda z, y, m, o: losses.hmlc_loss(z, y, kind="hmc", **o),
    "hce": lambda z, y, m, o: losses.hmlc_loss(z, y, kind="hce", **o),
    "hmce": lambda z, y, m, o: losses.hmlc_loss(z, y, kind="hmce", **o),
    # Two EM iterations keep compiles short; test_gmm covers degenerate rows at
    # the default iteration count.
    "ghmlc": lambda z, y, m, o: losses.ghmlc_loss(
        z, y, gmm=GMMConfig(num_iters=2), full_weight=0.5, **o),
    # Soft masks carry the GMM's gradient (straight-through masks combine the
    # hard forward above with this backward).
    "ghmlc_soft_batch": lambda z, y, m, o: losses.ghmlc_loss(
        z, y, gmm=GMMConfig(mask_grad="soft", fit_over="batch", num_iters=2),
        enforce_hierarchy=True, **o),
    "ahmlc": lambda z, y, m, o: losses.ahmlc_loss(z, m, y, full_weight=0.5, **o),
}


@functools.lru_cache(maxsize=None)
def _value_and_grad(name):
  """jit(value_and_grad) of one loss; the temperature is traced (fewer compiles)."""
  fn = LOSSES[name]
  return jax.jit(jax.value_and_grad(
      lambda z, y, m, t: fn(z, y, m, dict(temperature=t)), argnums=(0, 2)))


@st.composite
def degenerate_batches(draw):
  # Few shapes, one compile each: a lone row, B = 1, one view, and a plain batch.
  batch, views, levels = draw(st.sampled_from(SHAPES))
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  kind = draw(st.sampled_from(["random", "constant", "zeros", "duplicated", "two_rows",
                               "one_hot", "sparse"]))
  z = rng.normal(size=(batch, views, DIM))
  if kind == "constant":
    z = np.full_like(z, draw(st.sampled_from([-2.0, 0.5, 1.0])))
  elif kind == "zeros":
    z = np.zeros_like(z)
  elif kind == "duplicated":
    z = np.broadcast_to(z[:1, :1], z.shape).copy()
  elif kind == "two_rows":
    z = np.where(rng.uniform(size=(batch, views, 1)) < 0.5, z[:1, :1], -z[:1, :1])
  elif kind == "one_hot":
    z = np.eye(DIM)[rng.integers(0, DIM, size=(batch, views))]
  elif kind == "sparse":
    z = z * (rng.uniform(size=z.shape) < 0.2)
  if draw(st.booleans()):
    norm = np.linalg.norm(z, axis=-1, keepdims=True)
    z = np.where(norm > 0, z / np.where(norm > 0, norm, 1), 0)
  z = z * draw(st.sampled_from([1e-6, 1.0, 1e6]))

  label_kind = draw(st.sampled_from(["one_class", "all_distinct", "random"]))
  if label_kind == "one_class":
    y = np.zeros((batch, levels), np.int32)
  elif label_kind == "all_distinct":
    y = np.repeat(np.arange(batch)[:, None], levels, axis=1).astype(np.int32)
  else:
    leaves = rng.integers(0, 2 ** levels, size=batch)
    y = np.stack([leaves >> (levels - 1 - h) for h in range(levels)], 1).astype(np.int32)

  mask_kind = draw(st.sampled_from(["uniform", "empty_level", "all_zero", "binary"]))
  m = rng.uniform(size=(batch, views, levels, DIM))
  if mask_kind == "empty_level":
    m[:, :, draw(st.integers(0, levels - 1))] = 0.0
  elif mask_kind == "all_zero":
    m[:] = 0.0
  elif mask_kind == "binary":
    m = (m > 0.5).astype(float)
  temperature = draw(st.sampled_from([0.07, 0.5]))
  return (z.astype(np.float32), y, m.astype(np.float32), temperature)


def _assert_finite(name, batch):
  z, y, m, temperature = batch
  value, (grad_z, grad_m) = _value_and_grad(name)(z, y, m, np.float32(temperature))
  assert np.isfinite(value), (name, value)
  assert np.all(np.isfinite(grad_z)) and np.all(np.isfinite(grad_m)), name


def _fuzz_test(name):
  @FUZZ
  @given(batch=degenerate_batches())
  def test(batch):
    _assert_finite(name, batch)
  test.__name__ = f"test_{name}_is_finite_on_degenerate_input"
  return test


for _name in LOSSES:
  globals()[f"test_{_name}_is_finite_on_degenerate_input"] = _fuzz_test(_name)


def test_no_positive_anchor_gives_zero_not_nan():
  z = jnp.asarray(np.random.default_rng(0).normal(size=(4, 1, DIM)), jnp.float32)
  assert float(losses.supcon_loss(z, jnp.arange(4))) == 0.0
  assert float(losses.supcon_loss(z[:1])) == 0.0
