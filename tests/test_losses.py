"""hmlc_jax.losses against the float64 oracle, finite differences and bad input."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hmlc_jax import losses
from hmlc_jax.gmm import GMMConfig, level_masks
from tests import oracle
from tests.helpers import parent_local, tree_labels, unit_features

RTOL = 1e-5


def _close(actual, expected, rtol=RTOL):
  np.testing.assert_allclose(float(actual), expected, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("views", [1, 2])
@pytest.mark.parametrize("supervised", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_supcon_matches_oracle(views, supervised, seed):
  rng = np.random.default_rng(seed)
  batch = int(rng.integers(3, 40))
  x = unit_features(rng, batch, views, 16)
  y = rng.integers(0, 4, size=batch) if supervised else None
  t, tb = [(0.07, 0.07), (0.1, 0.07), (0.5, 1.0)][seed]
  got = jax.jit(lambda a: losses.supcon_loss(a, y, temperature=t, base_temperature=tb))(x)
  _close(got, oracle.supcon(x, y, t, tb))


@pytest.mark.parametrize("num_levels", [2, 3, 4])
@pytest.mark.parametrize("kind", ["hmc", "hce", "hmce"])
@pytest.mark.parametrize("views", [1, 2])
def test_hmlc_matches_oracle(num_levels, kind, views):
  # The three layer penalties take turns over the cases (each meets every kind,
  # level count and view count): one compiled loss a case.
  turn = (num_levels + ["hmc", "hce", "hmce"].index(kind) + views) % 3
  rng = np.random.default_rng(100 * num_levels + turn)
  batch = int(rng.integers(4, 33))
  x = unit_features(rng, batch, views, 16)
  y = tree_labels(rng, batch, num_levels)
  penalty = ["exp", "pow2", lambda v: 1.0 + v][turn]
  ref_penalty = [math.exp, lambda v: 2.0 ** v, lambda v: 1.0 + v][turn]
  got = jax.jit(lambda a: losses.hmlc_loss(a, y, kind=kind, layer_penalty=penalty))(x)
  _close(got, oracle.hmlc(x, y, kind, penalty=ref_penalty))


def test_hmlc_base_temperature_scales_loss():
  rng = np.random.default_rng(0)
  x, y = unit_features(rng, 12, 2, 8), tree_labels(rng, 12, 3)
  got = jax.jit(lambda a: losses.hmlc_loss(a, y, kind="hmc", temperature=0.2,
                                           base_temperature=0.1))(x)
  _close(got, oracle.hmlc(x, y, "hmc", 0.2, 0.1))


@pytest.mark.parametrize("num_levels", [2, 3, 4])
@pytest.mark.parametrize("views", [1, 2])
def test_ahmlc_matches_oracle(num_levels, views):
  rng = np.random.default_rng(num_levels * 10 + views)
  batch, dim = int(rng.integers(4, 25)), 12
  z = rng.normal(size=(batch, views, dim)).astype(np.float32)
  masks = rng.uniform(size=(batch, views, num_levels, dim)).astype(np.float32)
  masks[0, 0, 0] = 0.0                                 # a row with nothing at level 0
  y = tree_labels(rng, batch, num_levels)
  got, aux = jax.jit(lambda a, m: losses.ahmlc_loss(a, m, y, return_aux=True))(z, masks)
  want, want_levels = oracle.masked_levels(z, masks, y)
  _close(got, want)
  np.testing.assert_allclose(aux["level_losses"], want_levels, rtol=RTOL, atol=1e-6)
  np.testing.assert_allclose(aux["level_dims"], masks.sum(-1).mean((0, 1)), rtol=1e-6)


@pytest.mark.parametrize("options", [
    dict(level_weights="exp"), dict(level_weights="pow2"), dict(level_weights=[0.2, 0.5, 1.5]),
    dict(full_weight=0.5), dict(enforce_hierarchy=True), dict(temperature=0.2, base_temperature=0.1)])
def test_ahmlc_options_match_oracle(options):
  rng = np.random.default_rng(7)
  batch, views, dim, num_levels = 16, 2, 10, 3
  z = rng.normal(size=(batch, views, dim)).astype(np.float32)
  masks = rng.uniform(size=(batch, views, num_levels, dim)).astype(np.float32)
  y = tree_labels(rng, batch, num_levels)
  scheme = options.get("level_weights", "uniform")
  if isinstance(scheme, list):
    weights = np.array(scheme)
  elif scheme == "uniform":
    weights = np.full(num_levels, 1 / num_levels)
  else:
    base = math.e if scheme == "exp" else 2.0
    weights = np.array([base ** (1 / (num_levels - h)) for h in range(num_levels)])
    weights /= weights.sum()
  want, _ = oracle.masked_levels(
      z, masks, y, options.get("temperature", 0.07), options.get("base_temperature", 0.07),
      weights, options.get("full_weight", 0.0), options.get("enforce_hierarchy", False))
  _close(jax.jit(lambda a, m: losses.ahmlc_loss(a, m, y, **options))(z, masks), want)


def test_ahmlc_mask_gradient_matches_oracle_finite_differences():
  """d loss / d masks (what trains A-HMLC's attention heads) against central
  differences of the float64 oracle, every entry of a small case."""
  rng = np.random.default_rng(11)
  batch, views, dim, num_levels = 5, 2, 4, 3
  z = rng.normal(size=(batch, views, dim))
  masks = rng.uniform(0.2, 0.9, size=(batch, views, num_levels, dim))
  y = tree_labels(rng, batch, num_levels)
  options = dict(temperature=0.2, base_temperature=0.1)
  got = jax.jit(jax.grad(lambda m: losses.ahmlc_loss(
      jnp.asarray(z, jnp.float32), m, y, full_weight=0.5, **options)))(
          jnp.asarray(masks, jnp.float32))
  f = lambda m: oracle.masked_levels(z, m, y, 0.2, 0.1, None, 0.5)[0]
  want, eps = np.zeros_like(masks), 1e-6
  for index in np.ndindex(masks.shape):
    step = np.zeros_like(masks)
    step[index] = eps
    want[index] = (f(masks + step) - f(masks - step)) / (2 * eps)
  assert np.abs(want).max() > 1e-3                     # the masks matter
  np.testing.assert_allclose(np.asarray(got), want, rtol=2e-3, atol=2e-5)


@pytest.mark.parametrize("num_levels", [2, 3])
def test_levels_are_told_apart_by_label_prefix_not_by_column(num_levels):
  """Class ids local to their parent (the same fine id under two parents is two
  classes): every hierarchical loss matches the prefix-grouping oracle, and
  differs from what grouping by the column alone would give."""
  rng = np.random.default_rng(20 + num_levels)
  batch, views, dim = 24, 2, 12
  y = tree_labels(rng, batch, num_levels)
  local = parent_local(y)
  assert not np.array_equal(local, y)
  x = unit_features(rng, batch, views, dim)
  z = rng.normal(size=(batch, views, dim)).astype(np.float32)
  masks = rng.uniform(size=(batch, views, num_levels, dim)).astype(np.float32)
  # One program for every loss of the case (eager ops would compile one by one).
  hmlc, (got, aux), ghmlc, hard = jax.jit(lambda a, b, m: (
      [losses.hmlc_loss(a, local, kind=kind) for kind in ("hmc", "hce", "hmce")],
      losses.ahmlc_loss(b, m, local, return_aux=True), losses.ghmlc_loss(b, local),
      level_masks(b, num_levels, GMMConfig())[0]))(x, z, masks)
  for kind, value in zip(("hmc", "hce", "hmce"), hmlc):
    _close(value, oracle.hmlc(x, y, kind))
  want, levels = oracle.masked_levels(z, masks, y)
  _close(got, want)
  columns_only = [oracle.supcon_rows(*_column_grouping(z, masks, local, h)) for h in
                  range(num_levels)]
  assert any(abs(a - b) > 1e-3 for a, b in zip(columns_only, levels))
  _close(ghmlc, oracle.masked_levels(z, np.asarray(hard), y)[0])


def _column_grouping(z, masks, labels, h):
  """The SupCon rows of level h if positives shared only column h (the bug)."""
  x, example = oracle.view_major(np.asarray(z, np.float64) * np.asarray(masks, np.float64)[:, :, h])
  same = labels[example, h][:, None] == labels[example, h][None, :]
  return oracle.normalise(x), same, 0.07, 0.07


@pytest.mark.parametrize("fit_over", ["sample", "batch"])
@pytest.mark.parametrize("num_levels", [2, 3])
def test_ghmlc_matches_oracle_given_its_masks(fit_over, num_levels):
  rng = np.random.default_rng(num_levels)
  batch, views, dim = 20, 2, 32
  z = rng.normal(size=(batch, views, dim)).astype(np.float32)
  y = tree_labels(rng, batch, num_levels)
  config = GMMConfig(fit_over=fit_over)
  (got, aux), (masks, fit) = jax.jit(lambda a: (
      losses.ghmlc_loss(a, y, gmm=config, return_aux=True), level_masks(a, num_levels, config)))(z)
  masks = np.asarray(masks)
  assert set(np.unique(masks)) <= {0.0, 1.0}
  np.testing.assert_array_equal(masks.sum(axis=2), 1.0)   # every dimension in one level
  want, _ = oracle.masked_levels(z, masks, y)
  _close(got, want)
  np.testing.assert_allclose(aux["level_dims"], masks.sum(-1).mean((0, 1)), rtol=1e-6)
  np.testing.assert_allclose(aux["gmm_log_likelihood"], np.mean(fit.log_likelihood), rtol=1e-6)


def test_ghmlc_level_order_follows_component_means():
  # Dimensions 0-7 carry large values, 8-31 small ones: with descending order the
  # coarsest level gets the large ones.
  rng = np.random.default_rng(0)
  z = np.concatenate([5 + rng.normal(size=(6, 2, 8)), 0.1 * rng.normal(size=(6, 2, 24))], -1)
  for order, coarse in (("descending", slice(0, 8)), ("ascending", slice(8, 32))):
    masks, fit = jax.jit(lambda a: level_masks(a, 2, GMMConfig(order=order)))(
        jnp.asarray(z, jnp.float32))
    assert np.all(np.asarray(masks)[:, :, 0, coarse] == 1.0)
    step = np.diff(np.asarray(fit.means), axis=-1)
    assert np.all(step < 0) if order == "descending" else np.all(step > 0)


def test_ghmlc_three_levels_take_components_in_mean_order():
  rng = np.random.default_rng(1)
  centres = np.repeat([0.0, 4.0, -4.0], [20, 6, 6])         # middle, high, low dimensions
  z = jnp.asarray(centres + 0.2 * rng.normal(size=(5, 2, 32)), jnp.float32)
  masks, fit = jax.jit(lambda a: level_masks(a, 3, GMMConfig(fit_over="sample",
                                                               min_share=0.0)))(z)
  levels = np.argmax(np.asarray(masks), axis=2)               # [B, V, D] level of each dim
  np.testing.assert_array_equal(levels, np.broadcast_to(np.repeat([1, 0, 2], [20, 6, 6]),
                                                        levels.shape))
  np.testing.assert_allclose(np.asarray(fit.responsibilities).sum(-1), 1.0, rtol=1e-5)
  assert np.all(np.diff(np.asarray(fit.means), axis=-1) < 0)


def _loss_fns(num_levels):
  """Every public loss as a function of the features alone (float64 inputs)."""
  rng = np.random.default_rng(3)
  y = tree_labels(rng, 6, num_levels)
  masks = jnp.asarray(rng.uniform(size=(6, 2, num_levels, 5)))
  return {
      "supcon": lambda x: losses.supcon_loss(x, y[:, -1]),
      "simclr": lambda x: losses.supcon_loss(x),
      "hmc": lambda x: losses.hmlc_loss(x, y, kind="hmc"),
      "hce": lambda x: losses.hmlc_loss(x, y, kind="hce"),
      "hmce": lambda x: losses.hmlc_loss(x, y, kind="hmce"),
      "ahmlc": lambda x: losses.ahmlc_loss(x, masks, y, full_weight=0.3),
      "ghmlc": lambda x: losses.ghmlc_loss(x, y, temperature=0.5),
      "ghmlc_soft": lambda x: losses.ghmlc_loss(
          x, y, temperature=0.5, gmm=GMMConfig(mask_grad="soft", num_iters=3)),
  }


@pytest.mark.parametrize("name", list(_loss_fns(2)))
def test_gradients_match_finite_differences(name):
  with jax.enable_x64(True):
    rng = np.random.default_rng(5)
    x = jnp.asarray(unit_features(rng, 6, 2, 5, np.float64))
    fn = jax.jit(_loss_fns(2)[name])
    # float64 inputs are computed in float64, so central differences are exact
    # to ~1e-10 here.
    check_grads(fn, (x,), order=1, modes=["rev"], eps=1e-6, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda: losses.supcon_loss(jnp.ones((4, 8))), "shape \\[B, V, D\\]"),
    (lambda: losses.supcon_loss(jnp.ones((4, 2, 8)), jnp.zeros(3, int)), "labels must have shape"),
    (lambda: losses.supcon_loss(jnp.ones((4, 2, 8)), jnp.zeros(4)), "integers"),
    (lambda: losses.supcon_loss(jnp.ones((4, 2, 8)), temperature=0.0), "temperature"),
    (lambda: losses.hmlc_loss(jnp.ones((4, 2, 8)), jnp.zeros((4, 2), int), kind="x"), "kind"),
    (lambda: losses.hmlc_loss(jnp.ones((4, 2, 8)), jnp.zeros((4,), int)), "\\[B, H\\]"),
    (lambda: losses.hmlc_loss(jnp.ones((4, 2, 8)), jnp.zeros((4, 2), int),
                              layer_penalty="cube"), "layer_penalty"),
    (lambda: losses.ahmlc_loss(jnp.ones((4, 2, 8)), jnp.ones((4, 2, 3, 8)),
                               jnp.zeros((4, 2), int)), "masks must have shape"),
    (lambda: losses.ghmlc_loss(jnp.ones((4, 2, 8)), jnp.zeros((4, 2), int),
                               level_weights=[1.0]), "level_weights"),
    (lambda: GMMConfig(mask_grad="sticky"), "gmm.mask_grad"),
])
def test_bad_input_raises_value_error(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_ghmlc_docstring_documents_shapes():
  doc = losses.ghmlc_loss.__doc__
  for fragment in ("[B, V, D]", "[B, H]", "level_losses", "gmm.mask_grad", "enforce_hierarchy"):
    assert fragment in doc


def _blockwise_cases(rng, batch, views, dim, num_levels):
  """name -> loss(features or embeddings, block_rows) for every loss family."""
  y = tree_labels(rng, batch, num_levels)
  masks = jnp.asarray(rng.uniform(size=(batch, views, num_levels, dim)), jnp.float32)
  return {
      "simclr": lambda x, b: losses.supcon_loss(x, block_rows=b),
      "supcon": lambda x, b: losses.supcon_loss(x, y[:, -1], block_rows=b),
      "hmce": lambda x, b: losses.hmlc_loss(x, y, kind="hmce", block_rows=b),
      "ghmlc": lambda x, b: losses.ghmlc_loss(x, y, full_weight=0.5, block_rows=b,
                                              gmm=GMMConfig(mask_grad="straight_through")),
      "ahmlc": lambda x, b: losses.ahmlc_loss(x, masks, y, block_rows=b),
  }


def test_blockwise_loss_equals_dense_value_and_gradient():
  """Blocks of 7 rows (the last one partial) and of 47 (one full block and one row)."""
  rng = np.random.default_rng(7)
  x = jnp.asarray(unit_features(rng, 24, 2, 16))            # N = 48 rows
  sizes = (None, 7, 47)
  for name, fn in _blockwise_cases(rng, 24, 2, 16, num_levels=3).items():
    # One program per loss holds the dense form and both block sizes.
    both = jax.jit(lambda a: [jax.value_and_grad(lambda b, r=r: fn(b, r))(a) for r in sizes])
    (dense_value, dense_grad), *blocked = both(x)
    assert np.abs(np.asarray(dense_grad)).max() > 1e-3, name   # a gradient worth comparing
    for block_rows, (value, grad) in zip(sizes[1:], blocked):
      np.testing.assert_allclose(value, dense_value, rtol=1e-5, err_msg=(name, block_rows))
      np.testing.assert_allclose(grad, dense_grad, rtol=1e-5, atol=1e-7,
                                 err_msg=(name, block_rows))


def test_blockwise_loss_keeps_only_a_block_of_similarities():
  """The compiled blockwise gradient never materialises an N x N array."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(unit_features(rng, 512, 2, 8))            # N = 1024
  y = tree_labels(rng, 512, 2)
  grad_of = lambda b: jax.jit(jax.grad(lambda a: losses.supcon_loss(a, y[:, -1],
                                                                    block_rows=b)))
  temp_bytes = lambda b: grad_of(b).lower(x).compile().memory_analysis().temp_size_in_bytes
  dense, blocked = temp_bytes(None), temp_bytes(64)
  assert dense >= 1024 * 1024 * 4                            # at least one N x N float32
  assert blocked < dense / 4, (blocked, dense)


# ----------------------------------------------------------------------------
# Precision: every contraction in full float32 on every platform

def _dots(jaxpr):
  """Every ``dot_general`` equation of a jaxpr, through its sub-jaxprs."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      found.append(eqn)
    stack = list(eqn.params.values())
    while stack:
      value = stack.pop()
      if isinstance(value, (list, tuple)):
        stack.extend(value)
      elif hasattr(value, "eqns"):
        found.extend(_dots(value))
      elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
        found.extend(_dots(value.jaxpr))
  return found


def _is_highest(precision):
  highest = jax.lax.Precision.HIGHEST
  return precision == highest or (isinstance(precision, tuple) and
                                  all(p == highest for p in precision))


def _loss_cases():
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.standard_normal((12, 2, 16)), jnp.float32)
  y = jnp.asarray(tree_labels(rng, 12, 3))
  unit = lambda a: losses.l2_normalize(a)[0]
  masks = jnp.asarray(rng.uniform(size=(12, 2, 3, 16)), jnp.float32)
  return {
      "supcon": lambda a: losses.supcon_loss(unit(a), y[:, -1]),
      "simclr": lambda a: losses.supcon_loss(unit(a)),
      "supcon_blocks": lambda a: losses.supcon_loss(unit(a), y[:, -1], block_rows=8),
      **{kind: (lambda a, kind=kind: losses.hmlc_loss(unit(a), y, kind=kind))
         for kind in ("hmc", "hce", "hmce")},
      "ghmlc_em": lambda a: losses.ghmlc_loss(a, y),
      "ghmlc_dp": lambda a: losses.ghmlc_loss(a, y, gmm=GMMConfig(kind="dp", dp_num_iters=2)),
      "ghmlc_full_instance": lambda a: losses.ghmlc_loss(a, y, full_weight=0.5,
                                                         instance_weight=0.5),
      "ahmlc": lambda a: losses.ahmlc_loss(a, masks, y),
  }, z


@pytest.mark.parametrize("name", sorted(_loss_cases()[0]))
def test_every_dot_of_every_loss_and_gradient_runs_at_highest_precision(name):
  cases, z = _loss_cases()
  jaxpr = jax.make_jaxpr(jax.value_and_grad(cases[name]))(z).jaxpr
  dots = _dots(jaxpr)
  assert dots, "the similarity matmul is missing from the jaxpr"
  loose = [str(eqn) for eqn in dots if not _is_highest(eqn.params["precision"])]
  assert loose == []


def test_the_precision_check_sees_a_default_precision_dot():
  jaxpr = jax.make_jaxpr(jax.grad(lambda a: jnp.sum(jnp.einsum("nd,md->nm", a, a))))(
      jnp.ones((3, 2))).jaxpr
  assert not all(_is_highest(eqn.params["precision"]) for eqn in _dots(jaxpr))


def test_a_seven_level_tree_runs_through_every_loss():
  """iNaturalist's depth (kingdom -> species): every loss and its gradient are
  finite, and G-HMLC gives each of the 7 levels its own group of dimensions."""
  rng = np.random.default_rng(7)
  y = jnp.asarray(tree_labels(rng, 64, 7))
  z = jnp.asarray(rng.standard_normal((64, 2, 128)), jnp.float32)
  masks = jnp.asarray(rng.uniform(size=(64, 2, 7, 128)), jnp.float32)
  unit = lambda a: losses.l2_normalize(a)[0]
  cases = {"supcon": lambda a: losses.supcon_loss(unit(a), y[:, -1]),
           "hmce": lambda a: losses.hmlc_loss(unit(a), y, kind="hmce"),
           "ghmlc": lambda a: losses.ghmlc_loss(a, y),
           "ahmlc": lambda a: losses.ahmlc_loss(a, masks, y)}
  everything = jax.jit(lambda a: ({name: jax.value_and_grad(fn)(a) for name, fn in cases.items()},
                                   losses.ghmlc_loss(a, y, return_aux=True)[1]))
  results, aux = everything(z)                                  # one compile
  for name, (value, grad) in results.items():
    assert np.isfinite(float(value)) and np.all(np.isfinite(grad)), name
  dims = np.asarray(aux["level_dims"])
  assert dims.shape == (7,) and dims.sum() == 128 and dims.min() >= 128 // 7 - 1, dims
