"""hmlc_jax.gmm.fit_dp_gmm: the Dirichlet-process mixture against scikit-learn's
BayesianGaussianMixture, finite differences and degenerate rows."""
from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

from hmlc_jax.gmm import ACTIVE_WEIGHT, fit_dp_gmm

from tests.test_gmm import _degenerate_rows

MAX_COMPONENTS = 8


def well_separated(rng, k: int, n: int = 400) -> np.ndarray:
  """``n`` draws of a 1-D mixture of ``k`` components, each weight >= 0.1, standard
  deviations in [0.5, 1.5], neighbouring means 4 (sigma_i + sigma_j) + U(0, 2) apart."""
  while True:
    weights = rng.dirichlet(2 * np.ones(k))
    if weights.min() >= 0.1:
      break
  sigma = rng.uniform(0.5, 1.5, k)
  means = np.concatenate([[0.0], np.cumsum(4 * (sigma[:-1] + sigma[1:])
                                            + rng.uniform(0, 2, k - 1))])
  z = rng.choice(k, n, p=weights)
  return rng.normal(means[z], sigma[z])


@functools.lru_cache(maxsize=None)
def mixtures():
  rng = np.random.default_rng(2026)
  truth = rng.permutation(np.repeat(np.arange(1, 5), 15))       # 60 fresh mixtures
  return truth, np.stack([well_separated(rng, k) for k in truth]).astype(np.float32)


@functools.lru_cache(maxsize=None)
def scikit_learn_fits():
  truth, x = mixtures()
  counts, scores = [], []
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    for i, row in enumerate(x):
      model = BayesianGaussianMixture(
          n_components=MAX_COMPONENTS, weight_concentration_prior_type="dirichlet_process",
          random_state=i).fit(row[:, None].astype(np.float64))
      counts.append(int(np.sum(model.weights_ >= ACTIVE_WEIGHT)))
      scores.append(model.score(row[:, None].astype(np.float64)))
  return np.array(counts), np.array(scores)


@functools.lru_cache(maxsize=None)
def our_fits():
  _, x = mixtures()
  return jax.jit(lambda a: fit_dp_gmm(a, MAX_COMPONENTS))(jnp.asarray(x))


def test_counts_the_components_at_least_as_often_as_scikit_learn():
  truth, _ = mixtures()
  ours = np.asarray(our_fits().num_active)
  theirs, _ = scikit_learn_fits()
  ours_right, theirs_right = np.mean(ours == truth), np.mean(theirs == truth)
  assert ours_right >= 0.9, (ours_right, ours, truth)
  assert ours_right >= theirs_right, (ours_right, theirs_right)


def test_score_matches_scikit_learn_where_the_counts_agree():
  """Same structure found: the variational log-density per point agrees (the
  priors differ only in the variance estimate's ddof)."""
  theirs_count, theirs_score = scikit_learn_fits()
  fit = our_fits()
  same = np.asarray(fit.num_active) == theirs_count
  assert same.mean() > 0.6
  np.testing.assert_allclose(np.asarray(fit.log_likelihood)[same], theirs_score[same], atol=0.05)


def test_weights_are_a_distribution_and_inactive_components_are_empty():
  fit = our_fits()
  np.testing.assert_allclose(np.asarray(fit.weights).sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(fit.responsibilities).sum(-1), 1.0, rtol=1e-5)
  inactive = np.asarray(fit.weights) < ACTIVE_WEIGHT
  held = np.asarray(fit.responsibilities).sum(-2) / 400      # share of points per component
  assert np.all(held[inactive] < 0.05)


def test_gradients_match_finite_differences():
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(0, 1, 12), rng.normal(8, 0.7, 8)])
  def probe(a):
    fit = fit_dp_gmm(a, 4, num_iters=30)
    return fit.log_likelihood + jnp.sum(fit.means ** 2) * 1e-2

  with jax.enable_x64(True):
    a = jnp.asarray(x, jnp.float64)
    grad = np.asarray(jax.jit(jax.grad(probe))(a))
    probe = jax.jit(probe)
    eps = 1e-6
    for i in (0, 5, 13, 19):
      e = np.zeros_like(x)
      e[i] = eps
      fd = (float(probe(a + e)) - float(probe(a - e))) / (2 * eps)
      np.testing.assert_allclose(grad[i], fd, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_degenerate_rows_give_finite_values_and_gradients(scale):
  x = jnp.asarray(_degenerate_rows() * scale, jnp.float32)
  def probe(a):
    fit = fit_dp_gmm(a, 4)
    return fit.log_likelihood.sum() + fit.means.sum(), fit
  (_, fit), grad = jax.jit(jax.value_and_grad(probe, has_aux=True))(x)
  for leaf in list(fit) + [grad]:
    assert np.all(np.isfinite(np.asarray(leaf)))


def test_batched_fit_equals_row_by_row_and_vmap():
  _, x = mixtures()
  fit = our_fits()
  fit_one = jax.jit(lambda a: fit_dp_gmm(a, MAX_COMPONENTS))
  single = fit_one(jnp.asarray(x[7]))
  mapped = jax.jit(jax.vmap(fit_one))(jnp.asarray(x[:8]))
  np.testing.assert_allclose(fit.means[7], single.means, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(mapped.num_active, fit.num_active[:8])


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_components=0), "max_components"), (dict(max_components=30), "max_components"),
    (dict(max_components=2, weight_concentration=0.0), "weight_concentration"),
    (dict(max_components=2, mean_precision=-1.0), "mean_precision"),
])
def test_bad_arguments_are_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    fit_dp_gmm(jnp.ones(20), **kwargs)


# ---- G-HMLC with gmm.kind="dp" ------------------------------------------------


def _grouped_embedding(rng, sizes, levels, batch=32):
  """Rows whose |z| per dimension forms ``len(sizes)`` well-separated groups."""
  scale = np.concatenate([np.full(n, v) for n, v in zip(sizes, levels)])
  return jnp.asarray(scale * rng.choice([-1.0, 1.0], size=(batch, len(scale)))
                     * rng.uniform(0.95, 1.05, size=(batch, len(scale))), jnp.float32)


@pytest.mark.parametrize("sizes, levels, count", [
    ((40, 40, 48), (3.0, 2.0, 1.0), 3),     # three groups for three levels
    ((64, 64), (3.0, 1.0), 2),              # two groups: the finest level starts empty
    ((30, 30, 30, 38), (4.0, 3.0, 2.0, 1.0), 4),   # four: the last two share level 2
])
def test_dp_masks_follow_the_inferred_groups(sizes, levels, count):
  from hmlc_jax.gmm import GMMConfig, level_masks
  z = _grouped_embedding(np.random.default_rng(0), sizes, levels)
  config = GMMConfig(kind="dp", min_share=0.1)
  masks, fit = jax.jit(lambda a: level_masks(a, 3, config))(z)
  assert int(fit.num_active) == count
  dims = np.asarray(masks[0]).sum(-1)
  np.testing.assert_allclose(np.asarray(masks).sum(-2), 1.0)          # a partition
  assert dims.min() >= int(0.1 * 128)
  bounds = np.cumsum((0,) + sizes)
  group_level = [int(np.argmax(np.asarray(masks[0])[:, a:b].sum(-1)))
                 for a, b in zip(bounds, bounds[1:])]
  assert group_level == [min(g, 2) for g in range(count)]


def test_ghmlc_loss_logs_the_component_count_with_dp():
  from hmlc_jax import losses
  from hmlc_jax.gmm import GMMConfig
  z = _grouped_embedding(np.random.default_rng(1), (40, 40, 48), (3.0, 2.0, 1.0), batch=16)
  labels = jnp.asarray(np.stack([np.arange(16) % 2, np.arange(16) % 4, np.arange(16) % 8], 1))
  z = jnp.stack([z, z * 1.01], axis=1)                                   # [B, V, D]
  (loss, aux), (_, em_aux) = jax.jit(lambda a: [
      losses.ghmlc_loss(a, labels, gmm=GMMConfig(kind=kind), return_aux=True)
      for kind in ("dp", "em")])(z)
  assert np.isfinite(float(loss)) and float(aux["gmm_components"]) == 3.0
  assert "gmm_components" not in em_aux


def test_feature_groups_finds_the_planted_groups():
  from hmlc_jax import analysis
  z = _grouped_embedding(np.random.default_rng(3), (40, 40, 48), (3.0, 2.0, 1.0), batch=64)
  report = analysis.feature_groups(np.asarray(z))
  assert report["groups"] == 3
  assert [c["dims"] for c in report["components"]] == [40, 40, 48]
