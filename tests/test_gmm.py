"""fit_gmm against scikit-learn, degenerate rows, and G-HMLC level masks."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from hmlc_jax.gmm import GMMConfig, fit_gmm, level_masks

MIXTURES = [  # (weights, means, standard deviations): well separated, down to 5%
    ((0.95, 0.05), (0.0, 6.0), (1.0, 0.5)),
    ((0.7, 0.3), (-2.0, 3.0), (0.5, 1.5)),
    ((0.5, 0.3, 0.2), (-5.0, 0.0, 5.0), (1.0, 0.7, 1.2)),
    ((0.05, 0.9, 0.05), (-8.0, 0.0, 8.0), (1.0, 1.0, 1.0)),
    ((0.6, 0.35, 0.05), (0.0, 10.0, 20.0), (2.0, 1.0, 0.5)),
]


def _sample(rng, mixture, n):
  weights, means, sds = map(np.asarray, mixture)
  comp = rng.choice(len(weights), size=n, p=weights)
  return rng.normal(means[comp], sds[comp])


@pytest.mark.parametrize("init", ["range", "split"])
@pytest.mark.parametrize("mixture", MIXTURES)
@pytest.mark.parametrize("n", [200, 3000])
def test_fit_matches_scikit_learn(mixture, n, init):
  rng = np.random.default_rng(n)
  rows = np.stack([_sample(rng, mixture, n) for _ in range(3)])       # a batch of fits
  fit = jax.jit(lambda x: fit_gmm(x, len(mixture[0]), num_iters=30, init=init))(
      jnp.asarray(rows))
  for r, x in enumerate(rows):
    ref = GaussianMixture(len(mixture[0]), n_init=5, tol=1e-8, max_iter=500,
                          random_state=0).fit(x[:, None])
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
  fit = fit_gmm(jnp.asarray(x, jnp.float32), 2, init=init)
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
  """One compile per (K, init): the fit and the gradients of three probes."""
  probes = (lambda f: f.log_likelihood.sum(), lambda f: f.responsibilities[..., 0].sum(),
            lambda f: f.means.sum() + f.variances.sum())
  return jax.jit(lambda x: (fit_gmm(x, k, init=init),
                            [jax.grad(lambda a, p=p: p(fit_gmm(a, k, init=init)))(x)
                             for p in probes]))


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
  batched = fit_gmm(x, 2)
  single = fit_gmm(x[1, 2], 2)
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
  masks, _ = level_masks(z, 2, GMMConfig(mask_grad="straight_through", num_iters=3))
  assert set(np.unique(np.asarray(masks))) <= {0.0, 1.0}


def test_batch_mode_shares_masks_across_rows():
  rng = np.random.default_rng(4)
  z = jnp.asarray(rng.normal(size=(5, 2, 16)) * np.linspace(0.1, 3, 16), jnp.float32)
  masks, fit = level_masks(z, 2, GMMConfig(fit_over="batch"))
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
