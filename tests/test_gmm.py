"""fit_gmm against scikit-learn, degenerate rows, and G-HMLC level masks."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from hmlc_jax.gmm import GMMConfig, fit_gmm, hard_assignment, level_masks
from tests import oracle

MIXTURES = [  # (weights, means, standard deviations): well separated, down to 5%
    ((0.95, 0.05), (0.0, 6.0), (1.0, 0.5)),
    ((0.7, 0.3), (-2.0, 3.0), (0.5, 1.5)),
    ((0.5, 0.3, 0.2), (-5.0, 0.0, 5.0), (1.0, 0.7, 1.2)),
    ((0.05, 0.9, 0.05), (-8.0, 0.0, 8.0), (1.0, 1.0, 1.0)),
    ((0.6, 0.35, 0.05), (0.0, 10.0, 20.0), (2.0, 1.0, 0.5)),
]


def jitted_fit(x, k, **options):
  """``fit_gmm`` as one program, compiled once per shape and options (called
  eagerly, its ops would compile one by one)."""
  return _fit_program(k, tuple(sorted(options.items())))(jnp.asarray(x, jnp.float32))


@functools.lru_cache(maxsize=None)
def _fit_program(k, options):
  return jax.jit(lambda a: fit_gmm(a, k, **dict(options)))


@functools.lru_cache(maxsize=None)
def _masks_program(k, config):
  return jax.jit(lambda a: level_masks(a, k, config))


def jitted_masks(x, k, config):
  return _masks_program(k, config)(jnp.asarray(x, jnp.float32))


def _sample(rng, mixture, n):
  weights, means, sds = map(np.asarray, mixture)
  comp = rng.choice(len(weights), size=n, p=weights)
  return rng.normal(means[comp], sds[comp])


@functools.lru_cache(maxsize=None)
def _scikit_learn_fits(mixture_index, n):
  """Three rows drawn from ``MIXTURES[mixture_index]`` (a batch of fits) and
  scikit-learn's fit of each (shared by both initialisations)."""
  mixture = MIXTURES[mixture_index]
  rng = np.random.default_rng(n)
  rows = np.stack([_sample(rng, mixture, n) for _ in range(3)])
  return rows, [GaussianMixture(len(mixture[0]), n_init=5, tol=1e-8, max_iter=500,
                                random_state=0).fit(x[:, None]) for x in rows]


@pytest.mark.parametrize("init", ["range", "split"])
@pytest.mark.parametrize("mixture", MIXTURES)
@pytest.mark.parametrize("n", [200, 3000])
def test_fit_matches_scikit_learn(mixture, n, init):
  rows, refs = _scikit_learn_fits(MIXTURES.index(mixture), n)
  fit = jitted_fit(rows, len(mixture[0]), num_iters=30, init=init)
  for r, (x, ref) in enumerate(zip(rows, refs)):
    ll_ref = ref.score(x[:, None])
    assert abs(float(fit.log_likelihood[r]) - ll_ref) <= 0.005 * abs(ll_ref)
    ours = np.sort(np.asarray(fit.means[r]))
    order = np.argsort(ref.means_.ravel())
    sds = np.sqrt(ref.covariances_.ravel()[order])
    assert np.all(np.abs(ours - ref.means_.ravel()[order]) <= 0.05 * sds)
    np.testing.assert_allclose(np.sum(fit.weights[r]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.sum(fit.responsibilities[r], -1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("init", ["range", "split"])
def test_small_component_of_one_row_is_found(init):
  # The G-HMLC setting: 128 entries, 6 of them (5%) far from the rest.
  rng = np.random.default_rng(1)
  x = np.concatenate([rng.normal(size=122), 8 + 0.3 * rng.normal(size=6)])
  fit = jitted_fit(x, 2, init=init)
  assign = np.argmax(np.asarray(fit.responsibilities), -1)
  top = np.argmax(np.asarray(fit.means))
  np.testing.assert_array_equal(assign == top, np.arange(128) >= 122)


def _degenerate_rows(dim=64):
  x = np.zeros((5, dim))
  x[1] = 3.0                               # constant
  x[2, : dim // 2] = 1.0                   # two-valued
  x[3] = np.arange(dim) % 3                # three-valued
  x[4] = np.linspace(-1, 1, dim)
  return x


@functools.lru_cache(maxsize=None)
def _fit_and_gradients(k, init):
  """One compile per (K, init): the fit and the gradients of three probes of it,
  from one backward pass batched over the probes (3 grads would fit 4 times)."""
  def probes(x):
    fit = fit_gmm(x, k, init=init)
    return jnp.stack([fit.log_likelihood.sum(), fit.responsibilities[..., 0].sum(),
                      fit.means.sum() + fit.variances.sum()]), fit

  def run(x):
    _, vjp, fit = jax.vjp(probes, x, has_aux=True)
    return fit, list(jax.vmap(vjp)(jnp.eye(3))[0])
  return jax.jit(run)


@pytest.mark.parametrize("init", ["range", "split"])
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_degenerate_rows_give_finite_values_and_gradients(scale, k, init):
  fit, grads = _fit_and_gradients(k, init)(jnp.asarray(_degenerate_rows() * scale, jnp.float32))
  for leaf in list(fit) + grads:
    assert np.all(np.isfinite(leaf))


def test_batched_fit_equals_row_by_row():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(2, 3, 40)), jnp.float32)
  batched, single = jitted_fit(x, 2), jitted_fit(x[1, 2], 2)
  np.testing.assert_allclose(batched.means[1, 2], single.means, rtol=1e-5, atol=1e-6)


def test_mask_gradient_modes():
  rng = np.random.default_rng(3)
  z = jnp.asarray(rng.normal(size=(4, 16)), jnp.float32)
  weights = jnp.asarray(rng.normal(size=(4, 2, 16)), jnp.float32)
  def grad(mode):
    f = lambda a: jnp.sum(level_masks(a, 2, GMMConfig(mask_grad=mode, num_iters=3))[0]
                          * weights)
    return jax.jit(jax.grad(f))(z)
  hard, st, soft = grad("hard"), grad("straight_through"), grad("soft")
  np.testing.assert_array_equal(hard, 0.0)
  np.testing.assert_allclose(st, soft, rtol=1e-6)
  assert np.abs(soft).max() > 0
  masks, _ = jitted_masks(z, 2, GMMConfig(mask_grad="straight_through", num_iters=3))
  assert set(np.unique(np.asarray(masks))) <= {0.0, 1.0}


def test_batch_mode_shares_masks_across_rows():
  rng = np.random.default_rng(4)
  z = jnp.asarray(rng.normal(size=(5, 2, 16)) * np.linspace(0.1, 3, 16), jnp.float32)
  masks, fit = jitted_masks(z, 2, GMMConfig(fit_over="batch"))
  assert masks.shape == (5, 2, 2, 16)
  np.testing.assert_array_equal(masks, jnp.broadcast_to(masks[0, 0], masks.shape))
  stat = np.mean(np.abs(np.asarray(z)).reshape(-1, 16), 0)
  coarse = np.asarray(masks[0, 0, 0]) == 1
  assert stat[coarse].min() > stat[~coarse].max()       # descending: large |z| first


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="num_components"):
    fit_gmm(jnp.zeros((3, 2)), 3)
  with pytest.raises(ValueError, match="unknown init 'kmeans'"):
    fit_gmm(jnp.zeros((3, 4)), 2, init="kmeans")
  with pytest.raises(ValueError, match="gmm.init"):
    GMMConfig(init="kmeans")


@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("min_dims", [1, 5, 20, 42])
def test_hard_assignment_against_oracle(min_dims, descending):
  rng = np.random.default_rng(min_dims)
  x = rng.standard_t(2.0, size=(6, 128))                 # heavy tails: tiny extreme components
  x[0, :3] = 12.0                                        # ties among the largest values
  resp = np.asarray(jitted_fit(x, 3).responsibilities)
  assign = jax.jit(lambda a, r: hard_assignment(a, r, min_dims, descending=descending))
  ours = np.asarray(assign(jnp.asarray(x, jnp.float32), jnp.asarray(resp)))
  for row in range(len(x)):
    ref = oracle.clamped_assignment(x[row], resp[row].argmax(-1), 3, min_dims, descending)
    np.testing.assert_array_equal(ours[row], ref)
    assert np.bincount(ours[row], minlength=3).min() >= min_dims


def _unstructured_rows(rng, dim=128):
  """Rows with no mixture in them: normal, uniform, heavy-tailed, skewed."""
  return np.stack([rng.standard_normal(dim), rng.uniform(-1, 1, dim),
                   rng.standard_t(3.0, dim), rng.exponential(1.0, dim),
                   0.01 * rng.standard_normal(dim) + 3.0,
                   rng.laplace(0, 2, dim)]).astype(np.float32)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_fit_matches_the_float64_em_on_unstructured_rows(k):
  x = _unstructured_rows(np.random.default_rng(k))
  fit = jitted_fit(x, k)
  ref = oracle.gmm_em(x, k)
  for name in ("weights", "means", "variances"):
    np.testing.assert_allclose(getattr(fit, name), ref[name], rtol=2e-3, atol=2e-5,
                               err_msg=name)
  np.testing.assert_allclose(fit.responsibilities, ref["responsibilities"], atol=2e-3)


@pytest.mark.parametrize("min_share", [0.0, 0.25])
@pytest.mark.parametrize("k", [2, 3])
def test_level_masks_match_the_float64_em_on_unstructured_rows(k, min_share):
  """Per-sample masks: the oracle's components ordered by mean (descending),
  the argmax assignment, clamped to the floor, one-hot per level."""
  x = _unstructured_rows(np.random.default_rng(10 + k))
  masks, _ = jitted_masks(x, k, GMMConfig(fit_over="sample", min_share=min_share))
  ref = oracle.gmm_em(x, k)
  min_dims = min(int(np.floor(min_share * x.shape[1])), x.shape[1] // k)
  for row in range(len(x)):
    order = np.argsort(-ref["means"][row], kind="stable")
    argmax = ref["responsibilities"][row][:, order].argmax(-1)
    level = argmax if min_dims == 0 else oracle.clamped_assignment(
        x[row], argmax, k, min_dims, descending=True)    # no floor: the plain argmax
    np.testing.assert_array_equal(np.asarray(masks[row]), np.eye(k)[level].T, err_msg=row)


def test_hard_assignment_is_the_argmax_above_the_floor():
  # Three well-separated groups of 40+ values: the floor changes nothing.
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(m, 0.3, size=(4, s)) for m, s in ((5, 40), (0, 48), (-5, 40))],
                     axis=1)
  config = GMMConfig(fit_over="sample", min_share=0.25)
  fit = jitted_fit(x, 3)
  fit = fit._replace(responsibilities=fit.responsibilities[..., np.argsort(
      -np.asarray(fit.means[0]))])
  ours = jax.jit(lambda a, r: hard_assignment(a, r, 32))(jnp.asarray(x, jnp.float32),
                                                          fit.responsibilities)
  np.testing.assert_array_equal(np.asarray(ours), np.asarray(fit.responsibilities).argmax(-1))
  masks, _ = jitted_masks(x, 3, config)
  np.testing.assert_array_equal(np.asarray(masks).sum(-1), [[40, 48, 40]] * 4)


def _trained_like_embedding(rng, batch=256, dim=128):
  """Projection outputs in the shape measured on hfashion when the masks degenerate:
  a unit-normal bulk, one dimension far out in each tail and one near zero."""
  z = rng.standard_normal((batch, dim))
  z[:, 0] = 6.0 + 0.1 * z[:, 0]
  z[:, 1] = -6.0 + 0.1 * z[:, 1]
  z[:, 2] *= 0.01
  return z.astype(np.float32)


@pytest.mark.parametrize("fit_over", ["sample", "batch"])
def test_default_masks_keep_every_level_usable_on_trained_like_embeddings(fit_over):
  from configs import common
  rng = np.random.default_rng(1)
  z = jnp.asarray(_trained_like_embedding(rng))
  defaults = dict(common.base_config("ghmlc").gmm)
  floor = int(np.floor(defaults["min_share"] * z.shape[-1]))
  assert floor >= 4
  masks, _ = jitted_masks(z, 3, GMMConfig(**dict(defaults, fit_over=fit_over)))
  dims = np.asarray(masks).sum(-1)                          # [B, H]
  assert dims.min() >= floor
  np.testing.assert_allclose(dims.sum(-1), z.shape[-1])
  # Without the floor, the range start without re-seeding leaves a level about
  # one dimension of the same embedding.
  bare, _ = jitted_masks(z, 3, GMMConfig(**dict(defaults, fit_over=fit_over, min_share=0.0,
                                                init="range", reseed=False)))
  assert np.asarray(bare).sum(-1).mean(0).min() < 4


def _gap_row(rng, n=256):
  """Three groups with an empty middle: equal-width bins over [min, max] leave
  the middle bin without a point (true means -8.6, 14.4, 20.5)."""
  comp = rng.choice(3, size=n, p=(0.4, 0.3, 0.3))
  return rng.normal(np.array([-8.6, 14.4, 20.5])[comp], np.array([1.0, 1.0, 1.0])[comp])


def test_an_empty_start_loses_a_component_without_reseeding_and_keeps_it_with():
  rng = np.random.default_rng(3)
  rows = np.stack([_gap_row(rng) for _ in range(4)])
  lost = jitted_fit(rows, 3, num_iters=50, init="range", reseed=False)
  assert np.sum(np.min(np.asarray(lost.weights), -1) * rows.shape[1] < 1.0) >= 3
  for init in ("range", "split"):
    fit = jitted_fit(rows, 3, num_iters=50, init=init, reseed=True)
    assert np.all(np.min(np.asarray(fit.weights), -1) * rows.shape[1] >= 1.0), init
    for r, x in enumerate(rows):
      ref = GaussianMixture(3, n_init=5, tol=1e-8, max_iter=500, random_state=0).fit(x[:, None])
      ll_ref = ref.score(x[:, None])
      assert abs(float(fit.log_likelihood[r]) - ll_ref) <= 0.005 * abs(ll_ref), (init, r)


def test_reseeding_matches_the_float64_em():
  """The rule itself (which component, where its halves go) against the oracle,
  on rows where the range start leaves a bin empty."""
  rows = np.stack([_gap_row(np.random.default_rng(s)) for s in range(3)])
  fit = jitted_fit(rows, 3, num_iters=10, init="range", reseed=True)
  ref = oracle.gmm_em(rows, 3, num_iters=10, init="range", reseed=True)
  for name in ("weights", "means", "variances"):
    np.testing.assert_allclose(getattr(fit, name), ref[name], rtol=2e-3, atol=2e-5,
                               err_msg=name)


def _separated_mixture(rng, k, n=256):
  sds = rng.uniform(0.5, 2.0, k)
  means = np.cumsum([rng.uniform(-10, 10)] + [rng.uniform(6, 16) * max(sds[i - 1], sds[i])
                                               for i in range(1, k)])
  comp = rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 4.0)))
  return rng.normal(means[comp], sds[comp])


@pytest.mark.parametrize("k", [2, 3, 4])
def test_default_fit_keeps_every_component_of_separated_mixtures(k):
  rng = np.random.default_rng(100 + k)
  rows = np.stack([_separated_mixture(rng, k) for _ in range(24)])
  fit = jitted_fit(rows, k, num_iters=50)
  assert np.all(np.min(np.asarray(fit.weights), -1) * rows.shape[1] >= 1.0)
  for r, x in enumerate(rows):
    ll_ref = GaussianMixture(k, n_init=5, tol=1e-8, max_iter=500,
                             random_state=0).fit(x[:, None]).score(x[:, None])
    assert abs(float(fit.log_likelihood[r]) - ll_ref) <= 0.005 * abs(ll_ref), r
