"""One-dimensional Gaussian mixtures fitted by EM inside the jitted graph.

G-HMLC fits a ``K = H`` component mixture to the ``D`` scalar entries of each
embedding and gives every hierarchy level the dimensions of one component.
Everything here is pure, batched over leading axes, has static shapes and is
differentiable end to end.

Layout: the mixture is held as ``K`` separate ``[..., N]`` arrays (one per
component) and the EM iterations are unrolled with a static count; with
``K`` small this is faster than a trailing ``K`` axis on every backend we
measured and lets XLA fuse each iteration into a handful of loops.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

# A row's squared scale is its variance plus this share of its second moment
# (so a constant non-zero row has a scale) plus a tiny constant (so an all-zero
# row has one).
_SECOND_MOMENT_SHARE = 1e-6
_TINY_SCALE2 = 1e-20

# Contractions in full float32 on every platform (TPU and TF32 GPUs default lower).
_EXACT = jax.lax.Precision.HIGHEST
FIT_OVER = ("sample", "batch")
ORDERS = ("descending", "ascending")
MASK_GRADS = ("hard", "straight_through", "soft")
KINDS = ("em", "dp")


@dataclasses.dataclass(frozen=True)
class GMMConfig:
  """How G-HMLC fits its mixture and turns it into level masks.

  Attributes:
    num_iters: EM iterations.
    var_floor: variance floor relative to the data's squared scale.
    count_floor: pseudo-count added to every component (keeps empty
      components finite; they stay at the data's mean and scale).
    init: ``"split"`` (greedy between-variance cuts of the sorted values)
      or ``"range"`` (equal-width bins, no sort); see ``fit_gmm``.
    reseed: after every M-step, a component holding less than one point is
      re-seeded by splitting the widest component in two, so no component
      (and no G-HMLC level) is lost; see ``fit_gmm``.
    fit_over: ``"sample"`` fits one mixture per embedding row; ``"batch"``
      fits one mixture to the per-dimension mean ``|z|`` of the global batch
      and shares the masks across rows.
    order: components sorted by mean, ``"descending"`` or ``"ascending"``;
      component ``k`` of that order serves level ``k`` (coarsest first).
    mask_grad: ``"hard"`` (mask is a constant in the gradient),
      ``"straight_through"`` (hard forward, responsibilities backward) or
      ``"soft"`` (responsibilities as masks).
    min_share: every level's hard mask keeps at least ``floor(min_share * D)``
      dimensions (``0``: the plain argmax of the responsibilities). See
      ``hard_assignment``: the mixture still decides the group sizes above the
      floor and which dimensions go where; the floor only moves the cut
      between neighbouring components in the component order.
    kind: ``"em"`` (a ``K = H`` mixture by EM, ``fit_gmm``) or ``"dp"`` (a
      Dirichlet-process mixture of at most ``max_components``,
      ``fit_dp_gmm``, that infers how many groups the features form). With
      ``"dp"`` the components, in the mask order, serve the levels in turn,
      inactive ones (expected weight below ``ACTIVE_WEIGHT``) going with the
      level of the active component before them: with more active
      components than levels the surplus joins the last (finest) level, with
      fewer the last levels start empty and ``min_share`` gives them their
      floor of dimensions.
    max_components: the DP mixture's truncation (``kind="dp"``).
    dp_num_iters: its variational updates (``kind="dp"``).
    dp_var_prior: its precision prior's variance scale relative to the data's
      (``fit_dp_gmm``'s ``var_prior``; scikit-learn's 1 hides tight groups of
      a few dozen dimensions).
  """
  num_iters: int = 10
  var_floor: float = 1e-6
  count_floor: float = 1e-3
  init: str = "split"
  reseed: bool = True
  fit_over: str = "batch"
  order: str = "descending"
  mask_grad: str = "hard"
  min_share: float = 0.25
  kind: str = "em"
  max_components: int = 8
  dp_num_iters: int = 100
  dp_var_prior: float = 0.1

  def __post_init__(self):
    _check_choice("gmm.kind", self.kind, KINDS)
    if self.max_components < 1 or self.dp_num_iters < 0 or not self.dp_var_prior > 0:
      raise ValueError("gmm.max_components must be >= 1, gmm.dp_num_iters >= 0 and "
                       "gmm.dp_var_prior > 0")
    _check_choice("gmm.init", self.init, tuple(_INITS))
    _check_choice("gmm.fit_over", self.fit_over, FIT_OVER)
    _check_choice("gmm.order", self.order, ORDERS)
    _check_choice("gmm.mask_grad", self.mask_grad, MASK_GRADS)
    if self.num_iters < 0:
      raise ValueError(f"gmm.num_iters must be >= 0, got {self.num_iters}")
    if not self.var_floor > 0 or not self.count_floor > 0:
      raise ValueError("gmm.var_floor and gmm.count_floor must be positive")
    if not 0.0 <= self.min_share <= 1.0:
      raise ValueError(f"gmm.min_share must lie in [0, 1], got {self.min_share}")


class GMMFit(NamedTuple):
  """A fitted mixture; leading axes ``...`` are the batch of independent fits.

  Attributes:
    weights: ``[..., K]`` mixing weights (sum to one).
    means: ``[..., K]``.
    variances: ``[..., K]`` (at least the variance floor).
    responsibilities: ``[..., N, K]`` posterior of each point.
    log_likelihood: ``[...]`` mean log-likelihood per point.
  """
  weights: jnp.ndarray
  means: jnp.ndarray
  variances: jnp.ndarray
  responsibilities: jnp.ndarray
  log_likelihood: jnp.ndarray


def fit_gmm(x: jnp.ndarray, num_components: int, *,     # defaults: GMMConfig's (its class fields)
            num_iters: int = GMMConfig.num_iters, var_floor: float = GMMConfig.var_floor,
            count_floor: float = GMMConfig.count_floor, init: str = GMMConfig.init,
            reseed: bool = GMMConfig.reseed) -> GMMFit:
  """Fits a 1-D Gaussian mixture by EM over the last axis of ``x``.

  Each row is first standardised by its own scale (the square root of its
  variance plus a small share of its second moment), EM runs on values of
  order one, and the parameters are mapped back. The variance floor is thus
  ``var_floor`` times the row's squared scale, and constant rows, two-valued
  rows, all-zero rows and rows scaled by 1e-6 or 1e6 stay finite in value and
  gradient (no quantity inside EM is near float32's under- or overflow).

  Initialisation is deterministic and finds well-separated components even
  when one holds only a few percent of the points (a quantile split does
  not): ``init="range"`` (default) cuts ``[min, max]`` of each row into ``K``
  equal-width bins, with no sort; ``init="split"`` cuts the sorted values
  ``K - 1`` times where the between-segment variance grows most, which also
  ignores lone outliers but costs a sort (the dominant cost of a G-HMLC step
  on CPU for 128-dimensional embeddings).

  Either start can leave a component empty (an equal-width bin between two
  groups, or a component that EM drains), and EM never revives an empty
  component. With ``reseed`` (default), after every M-step each component
  holding less than one point's responsibility is re-seeded: the widest
  living component (largest weight times variance) is split in two at one
  standard deviation either side of its mean, each half taking half its
  weight and variance. The rule is deterministic, runs on ``[..., 1]``
  parameters (no cost of order ``N``) and the next E-step settles the halves.

  Args:
    x: float ``[..., N]``; each row along the last axis is one data set.
    num_components: ``K >= 1``, at most ``N``.
    num_iters: EM iterations after the initial M-step (static; a ``lax.fori_loop``,
      reverse-differentiable).
    var_floor: variance floor relative to the row's squared scale.
    count_floor: pseudo-count per component; an empty component falls back
      to the row's mean and scale instead of dividing by zero.
    init: ``"range"`` or ``"split"``.
    reseed: re-seed components that hold less than one point (see above).

  Returns:
    ``GMMFit`` in the units of ``x`` (float32, or float64 for float64 input).
  """
  x = _at_least_float32(x)
  _check_components("num_components", num_components, x.shape[-1])
  centre, scale2, u = _standardize(x)
  scale = jnp.sqrt(scale2)
  prior = _Prior(count=count_floor, var_floor=var_floor)

  _check_choice("init", init, tuple(_INITS))
  resp = _INITS[init](jax.lax.stop_gradient(u), num_components)
  m_step = (lambda r: _reseed(*_m_step(u, r, prior))) if reseed else (
      lambda r: _m_step(u, r, prior)[:3])
  params = m_step(resp)
  # A loop, not unrolled: the same values, and a program that compiles 2-3x
  # faster when differentiated through.
  params = jax.lax.fori_loop(0, num_iters, lambda _, p: m_step(_e_step(u, p)[0]), params)
  resp, log_likelihood = _e_step(u, params)
  weights, means, variances = (jnp.concatenate(p, axis=-1) for p in params)
  return GMMFit(weights=weights,
                means=centre + scale * means,
                variances=scale2 * variances,
                responsibilities=jnp.stack(resp, axis=-1),
                log_likelihood=log_likelihood - 0.5 * jnp.log(scale2[..., 0]))


class DPGMMFit(NamedTuple):
  """A fitted Dirichlet-process mixture: ``GMMFit``'s fields plus the count.

  Attributes:
    weights: ``[..., K]`` expected mixing weights (sum to one).
    means: ``[..., K]`` posterior means of the component means.
    variances: ``[..., K]`` inverse of the expected precisions.
    responsibilities: ``[..., N, K]``.
    log_likelihood: ``[...]`` mean per point of the variational log-density
      (``log sum_k exp(E[log pi_k] + E[log N(x | mu_k, lambda_k)])``, what
      scikit-learn's ``BayesianGaussianMixture.score`` gives).
    num_active: ``[...]`` int32, components whose expected weight is at
      least the ``active_weight`` threshold: the inferred number of groups.
  """
  weights: jnp.ndarray
  means: jnp.ndarray
  variances: jnp.ndarray
  responsibilities: jnp.ndarray
  log_likelihood: jnp.ndarray
  num_active: jnp.ndarray


ACTIVE_WEIGHT = 0.03


def fit_dp_gmm(x: jnp.ndarray, max_components: int, *, num_iters: int = 100,
               weight_concentration: float | None = None, mean_precision: float = 1.0,
               degrees_of_freedom: float = 1.0, var_prior: float = 1.0,
               reg_var: float = 1e-6,
               active_weight: float = ACTIVE_WEIGHT) -> DPGMMFit:
  """Variational 1-D Gaussian mixture under a truncated stick-breaking
  Dirichlet-process prior, over the last axis of ``x`` (Blei & Jordan 2006).

  The priors are scikit-learn's ``BayesianGaussianMixture`` defaults with
  ``weight_concentration_prior_type="dirichlet_process"``: stick proportions
  ``v_k ~ Beta(1, gamma)`` (``gamma = weight_concentration``, default
  ``1 / max_components``), and per component a Normal-Gamma prior centred on
  the row's mean with the row's variance as the precision prior's scale,
  ``mean_precision`` pseudo-observations for the mean and
  ``degrees_of_freedom`` for the precision (``var_prior`` scales the
  latter's variance). The closed-form coordinate
  updates (variational posteriors from the responsibilities, then
  responsibilities from expected log weights and log densities) run
  ``num_iters`` times in a ``lax.fori_loop`` (reverse-differentiable; the
  count is static).

  Coordinate ascent keeps a component it has split in two, so the fit starts
  from ``max_components`` deterministic initialisations at once, start ``s``
  cutting ``[min, max]`` of the row into ``s`` equal-width bins (the other
  components start empty), and keeps per row the start with the highest
  variational lower bound (scikit-learn's, up to constants; the choice is not
  differentiated). Rows are standardised first, as in ``fit_gmm``, so
  degenerate rows (constant, all zero, two-valued, scaled by 1e-6 or 1e6)
  stay finite in value and gradient. ``num_active`` counts the components
  whose expected weight is at least ``active_weight``.

  Args:
    x: float ``[..., N]``; each row along the last axis is one data set.
    max_components: truncation ``K >= 1``, at most ``N``.
    num_iters: variational updates after the initial one (static).
    weight_concentration: ``gamma > 0``; smaller favours fewer components.
    mean_precision: ``beta_0 > 0``.
    degrees_of_freedom: ``nu_0 > 0`` (scikit-learn's default: the number of
      features, 1).
    var_prior: the precision prior's variance scale relative to the row's
      variance (scikit-learn's ``covariance_prior`` default: 1, the row's
      variance). It adds about ``var_prior / n_k`` of the row's variance to a
      component of ``n_k`` points, which on a few dozen points hides tight
      groups; G-HMLC uses 0.1 (``GMMConfig.dp_var_prior``).
    reg_var: added to every component's variance, relative to the row's.
    active_weight: threshold of ``num_active``.

  Returns:
    ``DPGMMFit`` in the units of ``x``.
  """
  x = _at_least_float32(x)
  k = max_components
  _check_components("max_components", k, x.shape[-1])
  gamma = 1.0 / k if weight_concentration is None else weight_concentration
  for name, value in (("weight_concentration", gamma), ("mean_precision", mean_precision),
                      ("degrees_of_freedom", degrees_of_freedom), ("var_prior", var_prior)):
    if not value > 0:
      raise ValueError(f"{name} must be positive, got {value}")
  centre, scale2, u = _standardize(x)
  prior = _DPPrior(gamma, mean_precision, degrees_of_freedom, var_prior, reg_var)
  frozen = jax.lax.stop_gradient(u)
  starts = jnp.stack([jnp.stack(_range_split(frozen, s) + [jnp.zeros_like(u)] * (k - s), -1)
                      for s in range(1, k + 1)])                          # [S, ..., N, K]
  body = lambda _, resp: _dp_expect(u, _dp_update(u, resp, prior))[0]
  resp = jax.lax.fori_loop(0, num_iters + 1, body, starts)
  params = _dp_update(u, resp, prior)
  best = jnp.argmax(jax.lax.stop_gradient(_dp_lower_bound(resp, params)), axis=0)  # [...]
  pick = lambda t: jnp.take_along_axis(t, best[None, ..., None], axis=0)[0]
  params = jax.tree.map(pick, params)
  resp, log_likelihood = _dp_expect(u, params)
  a, b, _, means, _, variances = params
  stick = a / (a + b)
  left = jnp.cumprod(1.0 - stick, axis=-1)
  weights = stick * jnp.concatenate([jnp.ones_like(left[..., :1]), left[..., :-1]], axis=-1)
  weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
  return DPGMMFit(weights=weights, means=centre + jnp.sqrt(scale2) * means,
                  variances=scale2 * variances, responsibilities=resp,
                  log_likelihood=log_likelihood - 0.5 * jnp.log(scale2[..., 0]),
                  num_active=jnp.sum(weights >= active_weight, axis=-1).astype(jnp.int32))


def level_masks(z: jnp.ndarray, num_levels: int, config: GMMConfig | None = None,
                *, axis_name=None):
  """Per-level feature masks for G-HMLC from mixtures fitted to ``z``.

  Args:
    z: float ``[..., D]`` embeddings (per-sample mode fits each row).
    num_levels: ``H``, the number of mixture components.
    config: ``GMMConfig`` (default ``GMMConfig()``).
    axis_name: pmap axis whose global batch batch mode takes its statistic over.

  Returns:
    ``(masks, fit)``: masks ``[..., H, D]`` (float32 or float64) (level ``h`` is the
    component with the ``h``-th largest mean, or smallest with
    ``order="ascending"``; ``kind="dp"``: see ``GMMConfig``), and the
    ``GMMFit`` (``DPGMMFit`` for ``kind="dp"``) with components in that order.
    In batch mode the masks are ``[H, D]`` broadcast to ``[..., H, D]``.
  """
  config = config or GMMConfig()
  z = _at_least_float32(z)
  data = z
  if config.fit_over == "batch":
    rows = z.reshape(-1, z.shape[-1])
    if axis_name is not None:   # the global batch, summed in the single-device order
      rows = jax.lax.all_gather(rows, axis_name, axis=0, tiled=True)
    data = jnp.mean(jnp.abs(rows), axis=0)
  descending = config.order == "descending"
  if config.kind == "dp":
    dp = fit_dp_gmm(data, min(config.max_components, data.shape[-1]),
                    num_iters=config.dp_num_iters, var_prior=config.dp_var_prior)
    ordered = _order_by_mean(GMMFit(*dp[:5]), descending=descending)
    active = (ordered.weights >= ACTIVE_WEIGHT).astype(jnp.int32)
    level_of = jnp.clip(jnp.cumsum(active, axis=-1) - 1, 0, num_levels - 1)   # [..., K]
    to_level = jax.nn.one_hot(level_of, num_levels, dtype=ordered.means.dtype)
    level_resp = jnp.einsum("...nk,...kh->...nh", ordered.responsibilities, to_level,
                            precision=_EXACT)
    fit = DPGMMFit(*ordered, num_active=dp.num_active)
  else:
    fit = fit_gmm(data, num_levels, num_iters=config.num_iters, var_floor=config.var_floor,
                  count_floor=config.count_floor, init=config.init, reseed=config.reseed)
    fit = _order_by_mean(fit, descending=descending)
    level_resp = fit.responsibilities
  soft = jnp.swapaxes(level_resp, -1, -2)                                  # [..., H, D]
  min_dims = min(int(math.floor(config.min_share * z.shape[-1])), z.shape[-1] // num_levels)
  level = hard_assignment(data, level_resp, min_dims, descending=descending)
  hard = jax.nn.one_hot(level, num_levels, axis=-2, dtype=soft.dtype)
  if config.mask_grad == "hard":
    masks = jax.lax.stop_gradient(hard)
  elif config.mask_grad == "straight_through":
    masks = soft + jax.lax.stop_gradient(hard - soft)
  else:
    masks = soft
  return jnp.broadcast_to(masks, z.shape[:-1] + masks.shape[-2:]), fit


def hard_assignment(x: jnp.ndarray, responsibilities: jnp.ndarray, min_dims: int, *,
                    descending: bool = True) -> jnp.ndarray:
  """The component of every point, each component keeping at least ``min_dims``.

  ``min_dims = 0`` gives the argmax of the responsibilities. Otherwise the
  points are ranked by value in the component order (largest first when
  ``descending``), the mixture's hard counts ``n_k`` (argmax) give cumulative
  cuts ``C_k = n_0 + ... + n_k``, and each cut is clamped into
  ``[C_{k-1} + min_dims, N - (K - 1 - k) min_dims]``; the point of rank ``r``
  goes to the component ``k`` with ``C_{k-1} <= r < C_k``. When every
  component already holds ``min_dims`` points and the argmax assignment is
  ordered along the values (the usual case for 1-D mixtures), this is the
  argmax assignment itself.

  Args:
    x: float ``[..., N]`` the fitted values.
    responsibilities: float ``[..., N, K]``, components in the mask order.
    min_dims: static int, ``0 <= min_dims <= N // K``.
    descending: rank by decreasing value (the ``order="descending"`` masks).

  Returns:
    int32 ``[..., N]`` component index of every point.
  """
  argmax = jnp.argmax(responsibilities, axis=-1).astype(jnp.int32)
  n, k = responsibilities.shape[-2:]
  if min_dims <= 0:
    return argmax
  if min_dims * k > n:
    raise ValueError(f"min_dims * K = {min_dims * k} exceeds the {n} points")
  x = jax.lax.stop_gradient(jnp.broadcast_to(x, responsibilities.shape[:-1]))
  key = -x if descending else x
  index = jnp.arange(n)
  ahead = (key[..., None, :] < key[..., :, None]) | (
      (key[..., None, :] == key[..., :, None]) & (index < index[:, None]))
  rank = jnp.sum(ahead, axis=-1)                                           # [..., N]
  counts = jnp.sum(jax.nn.one_hot(argmax, k, dtype=jnp.int32), axis=-2)   # [..., K]
  cuts, previous = [], jnp.zeros(counts.shape[:-1], jnp.int32)
  total = jnp.zeros_like(previous)
  for c in range(k - 1):
    total = total + counts[..., c]
    cut = jnp.clip(total, previous + min_dims, n - (k - 1 - c) * min_dims)
    cuts.append(cut)
    previous = cut
  level = sum((rank >= cut[..., None]).astype(jnp.int32) for cut in cuts)
  return level if cuts else argmax


def _standardize(x):
  """``(centre, scale2, u)``: each row's mean, squared scale (its variance plus a
  small share of its second moment) and the standardised values."""
  centre = jnp.mean(x, axis=-1, keepdims=True)
  scale2 = (jnp.mean(jnp.square(x - centre), axis=-1, keepdims=True)
            + _SECOND_MOMENT_SHARE * jnp.mean(jnp.square(x), axis=-1, keepdims=True)
            + _TINY_SCALE2)
  return centre, scale2, (x - centre) / jnp.sqrt(scale2)


def _check_components(name, k, n):
  if k < 1 or k > n:
    raise ValueError(f"{name} must be in [1, {n}] for rows of {n} values, got {k}")


class _DPPrior(NamedTuple):
  """Priors of the DP mixture in standardised units (row mean 0, variance ~1)."""
  gamma: float          # stick-breaking concentration
  beta: float           # pseudo-observations of each mean, at 0
  dof: float            # pseudo-observations of each precision
  var: float            # the precision prior's variance scale
  reg_var: float


def _dp_update(u, resp, prior):
  """Variational posteriors from responsibilities ``[..., N, K]``, each
  ``[..., K]``: stick Beta ``(a, b)``, mean precision ``beta``, mean ``m``,
  ``dof`` and ``var``, the inverse of the expected precision."""
  counts = jnp.sum(resp, axis=-2) + 10 * jnp.finfo(u.dtype).eps
  later = jnp.sum(counts, axis=-1, keepdims=True) - jnp.cumsum(counts, axis=-1)
  mean_u = jnp.einsum("...nk,...n->...k", resp, u, precision=_EXACT) / counts
  spread = (jnp.einsum("...nk,...nk->...k", resp, jnp.square(u[..., None] - mean_u[..., None, :]),
                       precision=_EXACT)
            / counts + prior.reg_var)
  beta = prior.beta + counts
  dof = prior.dof + counts
  var = (prior.var + counts * spread + counts * prior.beta / beta * jnp.square(mean_u)) / dof
  return 1.0 + counts, prior.gamma + later, beta, counts * mean_u / beta, dof, var


def _dp_expect(u, params):
  """Responsibilities ``[..., N, K]`` and mean log-density ``[...]``."""
  a, b, beta, means, dof, var = params
  digamma = jax.scipy.special.digamma
  total = digamma(a + b)
  rest = digamma(b) - total
  log_pi = digamma(a) - total + jnp.cumsum(rest, axis=-1) - rest      # E[log pi_k]
  expand = lambda t: t[..., None, :]
  log_joint = expand(log_pi) - 0.5 * (
      math.log(2 * math.pi) + expand(jnp.log(var)) + jnp.square(u[..., None] - expand(means))
      / expand(var) + expand(jnp.log(dof) - math.log(2.0) - digamma(0.5 * dof) + 1.0 / beta))
  log_norm = jax.nn.logsumexp(log_joint, axis=-1, keepdims=True)
  return jnp.exp(log_joint - log_norm), jnp.mean(log_norm[..., 0], axis=-1)


def _dp_lower_bound(resp, params):
  """scikit-learn's variational lower bound of the DP mixture, up to constants,
  after the update from ``resp``: ``[...]``."""
  a, b, beta, _, dof, var = params
  entropy = -jnp.sum(resp * jnp.log(jnp.maximum(resp, 1e-30)), axis=(-2, -1))
  log_det_chol = -0.5 * (jnp.log(var) + jnp.log(dof))
  log_wishart = -(dof * log_det_chol + 0.5 * dof * math.log(2.0)
                  + jax.scipy.special.gammaln(0.5 * dof))
  log_beta = (jax.scipy.special.gammaln(a) + jax.scipy.special.gammaln(b)
              - jax.scipy.special.gammaln(a + b))
  return entropy + jnp.sum(-log_wishart + log_beta - 0.5 * jnp.log(beta), axis=-1)


class _Prior(NamedTuple):
  """Regularisation in standardised units (data mean 0, scale 1)."""
  count: float       # pseudo-count per component, placed at mean 0, variance 1
  var_floor: float   # added to every variance


def _range_split(u, num_components):
  """Hard initial responsibilities: ``K`` equal-width bins over ``[min, max]``.

  No sort: two reductions and one comparison per value. A small component
  far from the bulk gets a bin of its own (a quantile split would bury it in
  the bulk); a lone outlier can take a bin too, which ``init="split"`` avoids.
  """
  low = jnp.min(u, axis=-1, keepdims=True)
  width = (jnp.max(u, axis=-1, keepdims=True) - low) / num_components
  position = (u - low) / jnp.where(width > 0, width, 1.0)
  segment = jnp.clip(jnp.floor(position), 0, num_components - 1)
  return [(segment == k).astype(u.dtype) for k in range(num_components)]


def _sorted_split(u, num_components):
  """Hard initial responsibilities from greedy between-variance cuts.

  The sorted values are cut ``K - 1`` times, each time where the cut most
  increases the between-segment variance ``n_l n_r / n (mean_l - mean_r)^2``
  (cumulative sums make every candidate ``O(1)``). Robust to outliers, but
  the sort dominates the cost on CPU.
  """
  n = u.shape[-1]
  us = jnp.sort(u, axis=-1)
  csum = jnp.concatenate([jnp.zeros_like(us[..., :1]), jnp.cumsum(us, axis=-1)], axis=-1)
  cut = jnp.arange(1, n)                                   # cut between us[p-1] and us[p]
  bounds = jnp.broadcast_to(jnp.array([0, n]), u.shape[:-1] + (2,))
  for _ in range(num_components - 1):
    below = jnp.where(bounds[..., None, :] < cut[:, None], bounds[..., None, :], 0)
    above = jnp.where(bounds[..., None, :] > cut[:, None], bounds[..., None, :], n)
    start, stop = jnp.max(below, axis=-1), jnp.min(above, axis=-1)   # [..., N-1]
    mid = jnp.broadcast_to(cut, start.shape)
    take = lambda idx: jnp.take_along_axis(csum, idx, axis=-1)
    n_left, n_right = (mid - start).astype(u.dtype), (stop - mid).astype(u.dtype)
    mean_left = (take(mid) - take(start)) / jnp.maximum(n_left, 1)
    mean_right = (take(stop) - take(mid)) / jnp.maximum(n_right, 1)
    gain = n_left * n_right / (n_left + n_right) * jnp.square(mean_left - mean_right)
    is_bound = jnp.any(bounds[..., None, :] == cut[:, None], axis=-1)
    best = jnp.argmax(jnp.where(is_bound, -1.0, gain), axis=-1) + 1
    bounds = jnp.concatenate([bounds, best[..., None]], axis=-1)
  cuts = bounds[..., 2:]
  thresholds = 0.5 * (jnp.take_along_axis(us, cuts - 1, axis=-1)
                      + jnp.take_along_axis(us, cuts, axis=-1))
  segment = jnp.sum(u[..., :, None] > thresholds[..., None, :], axis=-1)
  return [(segment == k).astype(u.dtype) for k in range(num_components)]


_INITS = {"range": _range_split, "split": _sorted_split}


def _m_step(u, resp, prior):
  """Mixture parameters from responsibilities: lists of ``[..., 1]`` arrays
  (weights, means, variances), and each component's number of points."""
  points = [jnp.sum(r, axis=-1, keepdims=True) for r in resp]
  counts = [p + prior.count for p in points]
  total = sum(counts)
  weights = [c / total for c in counts]
  means = [jnp.sum(r * u, axis=-1, keepdims=True) / c for r, c in zip(resp, counts)]
  variances = [(jnp.sum(r * jnp.square(u - m), axis=-1, keepdims=True) + prior.count) / c
               + prior.var_floor
               for r, m, c in zip(resp, means, counts)]
  return weights, means, variances, points


def _reseed(weights, means, variances, points):
  """Re-seeds every component holding less than one point (see ``fit_gmm``).

  Components are visited in index order; each empty one takes half of the
  living component with the largest ``weight * variance`` (a re-seeded
  component counts as living for the ones after it). Lists of ``[..., 1]``.
  """
  weights, means, variances, points = map(list, (weights, means, variances, points))
  k = len(weights)
  for dead in range(k):
    empty = points[dead] < 1.0
    spread = [jnp.where(points[j] >= 1.0, weights[j] * variances[j], -1.0) if j != dead
              else jnp.full_like(weights[j], -2.0) for j in range(k)]
    widest = jnp.argmax(jnp.concatenate(spread, axis=-1), axis=-1)[..., None]
    for j in range(k):
      if j == dead:
        continue
      split = empty & (widest == j)
      sd = jnp.sqrt(variances[j])
      new = (0.5 * weights[j], means[j] + sd, 0.5 * variances[j], 0.5 * points[j])
      old = (0.5 * weights[j], means[j] - sd, 0.5 * variances[j], 0.5 * points[j])
      weights[dead], means[dead], variances[dead], points[dead] = (
          jnp.where(split, a, b) for a, b in zip(new, (weights[dead], means[dead],
                                                       variances[dead], points[dead])))
      weights[j], means[j], variances[j], points[j] = (
          jnp.where(split, a, b) for a, b in zip(old, (weights[j], means[j], variances[j],
                                                       points[j])))
  return weights, means, variances


def _e_step(x, params):
  """Responsibilities (list of ``[..., N]``) and mean log-likelihood ``[...]``."""
  log_joint = [jnp.log(w) - 0.5 * (jnp.log(2 * math.pi * v) + jnp.square(x - m) / v)
               for w, m, v in zip(*params)]
  return _normalise(log_joint)


def _normalise(log_joint):
  """Responsibilities and mean log-normaliser of a list of ``[..., N]`` log joints."""
  peak = jax.lax.stop_gradient(log_joint[0])
  for lj in log_joint[1:]:
    peak = jnp.maximum(peak, jax.lax.stop_gradient(lj))
  log_norm = peak + jnp.log(sum(jnp.exp(lj - peak) for lj in log_joint))
  resp = [jnp.exp(lj - log_norm) for lj in log_joint]
  return resp, jnp.mean(log_norm, axis=-1)


def _order_by_mean(fit: GMMFit, descending: bool) -> GMMFit:
  """Reorders the components of every fit by mean (ties by index).

  Component ``k``'s rank comes from ``[..., K, K]`` comparisons of the means;
  the fit is then mixed with the one-hot rank matrix, elementwise (a gather
  along ``K`` of the ``[..., N, K]`` responsibilities is far slower on CPU).
  """
  key = -fit.means if descending else fit.means
  k = key.shape[-1]
  index = jnp.arange(k)
  ahead = (key[..., None, :] < key[..., :, None]) | (
      (key[..., None, :] == key[..., :, None]) & (index < index[:, None]))
  rank = jnp.sum(ahead, axis=-1)                                          # [..., K]
  to_rank = (rank[..., None, :] == index[:, None]).astype(key.dtype)      # [..., K, K]
  reorder = lambda p: jnp.sum(to_rank * p[..., None, :], axis=-1)
  resp = jnp.sum(to_rank[..., None, :, :] * fit.responsibilities[..., None, :], axis=-1)
  return GMMFit(weights=reorder(fit.weights), means=reorder(fit.means),
                variances=reorder(fit.variances), responsibilities=resp,
                log_likelihood=fit.log_likelihood)


def _at_least_float32(x):
  """float32 for float32 and narrower inputs; float64 stays float64."""
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_choice(name, value, choices):
  if value not in choices:
    raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
