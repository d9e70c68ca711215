"""Supervised and hierarchical contrastive losses as pure JAX functions.

Shapes: a batch holds ``B`` examples with ``V`` views each; embeddings are
``[B, V, D]`` and hierarchical labels int ``[B, H]`` with column 0 the coarsest
level. Rows are the ``N = B * V`` (example, view) pairs.

Every loss is the SupCon term (Khosla et al., 2020) over some choice of
anchors, contrast set and positives, possibly per hierarchy level:

    l(i) = -(T / T_base) * mean_{p in P(i)} [ s_ip / T - log sum_{a in A(i)} exp(s_ia / T) ]

with ``s`` the dot product of the compared (L2-normalised) rows, ``P(i)`` the
rows other than ``i`` that share ``i``'s label and ``A(i)`` every valid row
but ``i``. A loss is the mean of ``l(i)`` over anchors that have at least one
positive; anchors without positives are left out (never NaN), and a level with
no such anchor contributes 0.

All functions are pure, jit/vmap/grad-safe and use static shapes. They
compute in float32 for float32, bfloat16 or float16 inputs (float64 stays
float64). Three ways to run them over several devices:

- ``jax.jit`` over a global batch sharded across devices: call with
  ``axis_name=None``; XLA partitions the computation and the gradient.
- ``jax.shard_map`` (default ``check_vma=True``): pass the mesh axis as
  ``axis_name``; the loss is a replicated scalar (``out_specs=P()``) and the
  gradients of replicated parameters come out summed over devices.
- ``jax.pmap``: pass its ``axis_name``; the value is the global batch's loss
  on every device and ``jax.grad`` gives each device exactly its rows of the
  global gradient: sum parameter gradients with ``psum``, do not ``pmean``.

With ``axis_name`` the embeddings and labels are all-gathered over that axis,
local rows are the anchors and the global batch is the contrast set.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from hmlc_jax import gmm as gmm_lib
from hmlc_jax import hierarchy
from hmlc_jax.parallel import varies_over

HMLC_KINDS = ("hmc", "hce", "hmce")

# Guards log(0) when the contrast sum of a restricted level underflows.
_TINY = 1e-30
# Similarity and logit matmuls in full float32 on every platform: TPUs default
# to bfloat16 passes and recent NVIDIA GPUs to TF32, where a 1e-3 cosine error
# is 1e-2 in a logit at T = 0.1.
_EXACT = jax.lax.Precision.HIGHEST
# Vectors whose largest entry is smaller than this are treated as zero.
_TINY_NORM = 1e-30


def supcon_loss(features: jnp.ndarray, labels: Optional[jnp.ndarray] = None, *,
                temperature: float = 0.07, base_temperature: float = 0.07,
                axis_name: Optional[str] = None,
                block_rows: Optional[int] = None) -> jnp.ndarray:
  """Supervised contrastive loss; SimCLR's NT-Xent when ``labels`` is None.

  Args:
    features: float ``[B, V, D]``, L2-normalised by the caller.
    labels: int ``[B]``, or None: then the only positives of a row are the
      other views of the same example (SimCLR).
    temperature: ``T > 0``.
    base_temperature: ``T_base``; the loss is scaled by ``T / T_base``.
    axis_name: pmap axis for global negatives, or None.
    block_rows: compute the ``N x N`` similarities for this many anchor rows
      at a time (same value and gradient, memory ``block_rows x N`` instead of
      ``N x N``, for large batches); None or 0: all at once.

  Returns:
    scalar (float32): mean over all ``B * V`` anchors that have a positive.
  """
  feats = _check_features(features, "features")
  _check_temperatures(temperature, base_temperature)
  contrast, offset = _gather(feats, axis_name)
  if labels is None:
    ids = jnp.arange(contrast.shape[0], dtype=jnp.int32)
  else:
    all_labels, _ = _gather(_check_labels(labels, feats.shape[0], ndim=1), axis_name)
    ids = hierarchy.prefix_group_ids(all_labels[:, None])[0]
  losses = _level_losses(feats[None], contrast[None], ids[None], None, offset,
                         temperature=temperature, base_temperature=base_temperature,
                         axis_name=axis_name, block_rows=block_rows)
  return losses[0]


def hmlc_loss(features: jnp.ndarray, labels: jnp.ndarray, *, kind: str = "hmce",
              temperature: float = 0.07, base_temperature: float = 0.07,
              layer_penalty: hierarchy.Penalty = "exp",
              axis_name: Optional[str] = None,
              block_rows: Optional[int] = None) -> jnp.ndarray:
  """HMC, HCE and HMCE losses of Zhang et al. (CVPR 2022), reference semantics.

  A unique instance column is appended to the labels (``H + 1`` columns). For
  ``l = 1..H`` level ``l`` keeps the first ``H + 1 - l`` columns; its loss is
  the SupCon term over the surviving examples (anchors and contrast set both
  restricted to them, all their views kept), positives agreeing on the kept
  columns. After each level the survivors are reduced to one example per
  distinct kept prefix (see ``hierarchy.hmlc_survivors``).

  * ``"hmc"``:  total = sum_l penalty(1/l) * loss_l
  * ``"hce"``:  total = sum_l max(loss_l, max of earlier levels' losses)
  * ``"hmce"``: both: penalty(1/l) * max(loss_l, earlier maximum)

  and the result is ``total / (H + 1)``. With ``axis_name`` the survivors are
  chosen over the global batch. All levels share one similarity matrix and one
  exponential; survivor sets are static masks.

  Args:
    features: float ``[B, V, D]``, L2-normalised by the caller.
    labels: int ``[B, H]``, coarsest level first.
    kind: ``"hmc"``, ``"hce"`` or ``"hmce"``.
    temperature: ``T > 0``.
    base_temperature: ``T_base``.
    layer_penalty: ``"exp"`` (``e**x``, what the authors' training script
      passes), ``"pow2"`` (``2**x``, their default) or a callable on floats.
    axis_name: pmap axis for global negatives, or None.
    block_rows: anchors per block of the ``N x N`` work, as in ``supcon_loss``.

  Returns:
    scalar (float32).
  """
  feats = _check_features(features, "features")
  _check_temperatures(temperature, base_temperature)
  if kind not in HMLC_KINDS:
    raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(HMLC_KINDS)}")
  labels = _check_labels(labels, feats.shape[0], ndim=2)
  num_levels = labels.shape[1]
  penalties = hierarchy.hmlc_penalties(num_levels, layer_penalty)

  contrast, offset = _gather(feats, axis_name)
  all_labels, _ = _gather(labels, axis_name)
  prefix_ids = hierarchy.prefix_group_ids(all_labels)
  survivors = hierarchy.hmlc_survivors(all_labels, prefix_ids)
  views = feats.shape[1]
  losses = _level_losses(
      feats[None], contrast[None], prefix_ids[::-1],
      jnp.repeat(survivors[:, :, None], views, axis=2), offset,
      temperature=temperature, base_temperature=base_temperature, axis_name=axis_name,
      block_rows=block_rows)

  total, worst_so_far = 0.0, -jnp.inf
  for level in range(num_levels):
    loss = losses[level]
    if kind != "hmc":
      loss = jnp.maximum(loss, worst_so_far)
      worst_so_far = loss
    total = total + (penalties[level] if kind != "hce" else 1.0) * loss
  return total / (num_levels + 1)


def ghmlc_loss(embeddings: jnp.ndarray, labels: jnp.ndarray, *,
               temperature: float = 0.07, base_temperature: float = 0.07,
               gmm: Optional[gmm_lib.GMMConfig] = None,
               level_weights: hierarchy.LevelWeights = "uniform",
               full_weight: float = 0.0, instance_weight: float = 0.0,
               enforce_hierarchy: bool = False,
               axis_name: Optional[str] = None, return_aux: bool = False,
               block_rows: Optional[int] = None):
  """G-HMLC: per-level SupCon on features selected by an in-graph GMM.

  1. A ``K = H`` component 1-D Gaussian mixture is fitted by EM once to the
     per-dimension mean ``|z|`` of the global batch (``gmm.fit_over="batch"``,
     the default), or to the ``D`` entries of every embedding row
     (``"sample"``).
  2. Components are sorted by mean (``gmm.order``); component ``h`` serves
     level ``h``, coarsest first.
  3. ``M_h[i, d] = 1`` where dimension ``d`` of row ``i`` belongs to
     component ``h`` (largest responsibility), except that every level keeps
     at least ``floor(gmm.min_share * D)`` dimensions (`gmm.hard_assignment`);
     ``gmm.mask_grad`` chooses how the mask enters the gradient.
  4. ``u_h = normalise(z * M_h)``; a row whose ``u_h`` is all zero is neither
     anchor nor contrast at level ``h``.
  5. ``L = sum_h w_h SupCon_h(u_h)`` with level-``h`` positives (examples
     whose label prefixes ``labels[:, :h + 1]`` agree), plus
     ``full_weight * SupCon(normalise(z))`` on the finest labels and
     ``instance_weight * SimCLR(normalise(z))``. With
     ``enforce_hierarchy`` a coarser level's loss is raised to the largest
     finer-level loss first (HCE-style).

  Args:
    embeddings: float ``[B, V, D]`` raw projection-head outputs.
    labels: int ``[B, H]``, coarsest level first.
    temperature: ``T > 0``.
    base_temperature: ``T_base``.
    gmm: ``gmm.GMMConfig`` (default ``GMMConfig()``: 10 EM iterations,
      one fit to the batch's per-dimension mean ``|z|``, descending order,
      hard masks, every level at least a quarter of the dimensions).
    level_weights: ``"uniform"`` (``1/H`` each), ``"exp"`` / ``"pow2"`` (HMC
      penalties, normalised to sum to one) or ``H`` numbers used as given.
    full_weight: weight of the extra SupCon term on the whole embedding.
    instance_weight: weight of an extra instance (SimCLR: positives are the
      other views of the same example) term on the whole embedding; it
      counters class collapse and the suppression of features no label needs.
    enforce_hierarchy: apply the HCE-style maximum across levels.
    axis_name: pmap axis for global negatives (and the batch-mode statistic).
    return_aux: also return a dict of diagnostics.
    block_rows: anchors per block of the ``N x N`` work, as in ``supcon_loss``.

  Returns:
    scalar (float32) loss, or ``(loss, aux)`` with ``aux`` holding
    ``level_losses [H]`` (coarsest first, before weighting),
    ``level_dims [H]`` (mean number of dimensions per level and row) and
    ``gmm_log_likelihood`` (mean per entry); with ``gmm.kind="dp"`` also
    ``gmm_components`` (active components, mean over fits).
  """
  z = _check_features(embeddings, "embeddings")
  labels = _check_labels(labels, z.shape[0], ndim=2)
  config = gmm or gmm_lib.GMMConfig()
  masks, fit = gmm_lib.level_masks(z, labels.shape[1], config, axis_name=axis_name)
  loss, aux = _masked_level_loss(
      z, masks, labels, temperature=temperature, base_temperature=base_temperature,
      level_weights=level_weights, full_weight=full_weight, instance_weight=instance_weight,
      enforce_hierarchy=enforce_hierarchy, axis_name=axis_name, block_rows=block_rows)
  aux["gmm_log_likelihood"] = _mean_over_devices(jnp.mean(fit.log_likelihood), axis_name)
  if isinstance(fit, gmm_lib.DPGMMFit):     # the inferred number of feature groups
    aux["gmm_components"] = _mean_over_devices(
        jnp.mean(fit.num_active.astype(jnp.float32)), axis_name)
  return (loss, aux) if return_aux else loss


def ahmlc_loss(embeddings: jnp.ndarray, masks: jnp.ndarray, labels: jnp.ndarray, *,
               temperature: float = 0.07, base_temperature: float = 0.07,
               level_weights: hierarchy.LevelWeights = "uniform",
               full_weight: float = 0.0, instance_weight: float = 0.0,
               enforce_hierarchy: bool = False,
               axis_name: Optional[str] = None, return_aux: bool = False,
               block_rows: Optional[int] = None):
  """A-HMLC: per-level SupCon on embeddings weighted by soft attention masks.

  ``u_h = normalise(z * M_h)`` and the level losses, weights and options are
  those of ``ghmlc_loss``; the masks come from per-level attention heads
  (``hmlc_jax.models``) and carry gradient.

  Args:
    embeddings: float ``[B, V, D]`` raw projection-head outputs.
    masks: float ``[B, V, H, D]``, usually in ``[0, 1]``.
    labels: int ``[B, H]``, coarsest level first.
    temperature, base_temperature, level_weights, full_weight, instance_weight,
    enforce_hierarchy, axis_name, block_rows: as in ``ghmlc_loss``.
    return_aux: also return ``{"level_losses": [H], "level_dims": [H]}``
      (``level_dims`` is the mean mask mass per level and row).

  Returns:
    scalar (float32) loss, or ``(loss, aux)``.
  """
  z = _check_features(embeddings, "embeddings")
  labels = _check_labels(labels, z.shape[0], ndim=2)
  masks = jnp.asarray(masks).astype(z.dtype)
  expected = z.shape[:2] + (labels.shape[1], z.shape[2])
  if masks.shape != expected:
    raise ValueError(f"masks must have shape [B, V, H, D] = {list(expected)}, "
                     f"got {list(masks.shape)}")
  loss, aux = _masked_level_loss(
      z, masks, labels, temperature=temperature, base_temperature=base_temperature,
      level_weights=level_weights, full_weight=full_weight, instance_weight=instance_weight,
      enforce_hierarchy=enforce_hierarchy, axis_name=axis_name, block_rows=block_rows)
  return (loss, aux) if return_aux else loss


def l2_normalize(x: jnp.ndarray, axis: int = -1):
  """``x / ||x||`` along ``axis``; vectors that are (numerically) zero stay zero.

  The vector is first divided by its largest magnitude (outside the gradient;
  normalisation is scale invariant, so value and gradient are unchanged),
  which keeps the squared norm in ``[1, D]``: no under- or overflow for
  entries anywhere from 1e-30 to 1e30. A vector whose largest entry is below
  1e-30 counts as zero.

  Returns:
    ``(normalised [same shape as x], nonzero bool [x.shape without axis])``;
    the gradient is finite everywhere and zero for zero vectors.
  """
  peak = jax.lax.stop_gradient(jnp.max(jnp.abs(x), axis=axis, keepdims=True))
  nonzero = peak > _TINY_NORM
  scaled = x / jnp.where(nonzero, peak, 1.0)
  sq = jnp.sum(jnp.square(scaled), axis=axis, keepdims=True)
  unit = jnp.where(nonzero, scaled * jax.lax.rsqrt(jnp.where(nonzero, sq, 1.0)), 0.0)
  return unit, jnp.squeeze(nonzero, axis)


def _masked_level_loss(z, masks, labels, *, temperature, base_temperature, level_weights,
                       full_weight, instance_weight, enforce_hierarchy, axis_name,
                       block_rows):
  """Weighted per-level SupCon on ``normalise(z * M_h)``; the G-/A-HMLC core.

  Args:
    z: float ``[B, V, D]``; masks: float ``[B, V, H, D]``; labels int ``[B, H]``.

  Returns:
    ``(loss, {"level_losses": [H], "level_dims": [H]})``.
  """
  _check_temperatures(temperature, base_temperature)
  num_levels = labels.shape[1]
  weights = hierarchy.level_weights(level_weights, num_levels)
  units, nonzero = l2_normalize(z[:, :, None, :] * masks)      # [B, V, H, D], [B, V, H]
  contrast, offset = _gather(units, axis_name)
  all_nonzero, _ = _gather(nonzero, axis_name)
  all_labels, _ = _gather(labels, axis_name)
  losses = _level_losses(
      jnp.transpose(units, (2, 0, 1, 3)), jnp.transpose(contrast, (2, 0, 1, 3)),
      hierarchy.prefix_group_ids(all_labels), jnp.transpose(all_nonzero, (2, 0, 1)),
      offset, temperature=temperature, base_temperature=base_temperature,
      axis_name=axis_name, block_rows=block_rows)
  if enforce_hierarchy:
    losses = jax.lax.cummax(losses, axis=0, reverse=True)
  loss = jnp.sum(jnp.asarray(weights, losses.dtype) * losses)
  for weight, whole_labels in ((full_weight, labels[:, -1]), (instance_weight, None)):
    if weight:
      loss = loss + weight * supcon_loss(
          l2_normalize(z)[0], whole_labels, temperature=temperature,
          base_temperature=base_temperature, axis_name=axis_name, block_rows=block_rows)
  level_dims = _mean_over_devices(jnp.mean(jnp.sum(masks, axis=-1), axis=(0, 1)), axis_name)
  return loss, {"level_losses": losses, "level_dims": level_dims}


def _level_losses(anchors, contrast, group_ids, valid, offset, *, temperature,
                  base_temperature, axis_name, block_rows=None):
  """Mean SupCon term of every level over the anchors that have a positive.

  The ``N x N`` work is one similarity matmul per distinct feature set, its
  row maximum, exponential and (per level) masked row sums. Positive sums
  need no ``N x N`` work: ``sum_{j in P(i)} a_i . c_j`` is ``a_i`` dotted
  with the sum of its group's valid rows, minus its own term.

  Args:
    anchors: float ``[F, B, V, D]`` local rows, ``F`` = 1 (features shared
      by all levels: one similarity matrix and one exponential) or ``L``.
    contrast: float ``[F, Bg, V, D]`` the global batch (``Bg = B`` without
      ``axis_name``).
    group_ids: int ``[L, Bg]`` in ``[0, Bg)``; rows of examples with equal
      ids are positives.
    valid: bool ``[L, Bg, V]`` rows taking part in each level, or None (all).
    offset: index of the first local example within the global batch.
    block_rows: anchors per block of the ``N x N`` part (see `_log_denominators`).

  Returns:
    float ``[L]``: each level's loss over the global batch.
  """
  num_levels, global_examples = group_ids.shape
  _, local_examples, views, dim = anchors.shape
  rows, global_rows = local_examples * views, global_examples * views
  a = anchors.reshape(-1, rows, dim)
  c = contrast.reshape(-1, global_rows, dim)
  local = lambda x: jax.lax.dynamic_slice_in_dim(x, offset * views, rows, axis=1)
  row_ids = jnp.repeat(group_ids, views, axis=1)                     # [L, Ng]
  anchor_ids = local(row_ids)                                        # [L, Na]
  if valid is None:
    valid_rows = jnp.ones((num_levels, global_rows), bool)
  else:
    valid_rows = valid.reshape(num_levels, global_rows)
  anchor_ok = local(valid_rows)
  weight = valid_rows.astype(a.dtype)

  pos_dots, num_pos = _positive_terms(a, c, row_ids, anchor_ids, weight, anchor_ok,
                                      global_examples)
  pos_logits = pos_dots / temperature

  log_denom = _log_denominators(a, c, None if valid is None else weight,
                                offset * views + jnp.arange(rows), num_levels,
                                temperature=temperature, block_rows=block_rows)
  per_anchor = -(temperature / base_temperature) * (
      pos_logits / jnp.maximum(num_pos, 1) - log_denom)
  return _global_mean(per_anchor, anchor_ok & (num_pos > 0), axis_name)


def _log_denominators(a, c, weight, anchor_rows, num_levels, *, temperature, block_rows):
  """``log sum_{m != n} w_lm exp(a_n . c_m / T)`` per level and anchor: the ``N x N`` part.

  One exponential per distinct feature set. With ``block_rows`` the anchors go
  through in blocks of that many rows (`jax.lax.map`, each block
  rematerialised in the backward pass), so at most ``block_rows x Ng``
  logits live at once instead of ``Na x Ng``; every row's sum is the same.

  Args:
    a: ``[F, Na, D]`` anchors; c: ``[F, Ng, D]`` contrast rows.
    weight: ``[L, Ng]`` 1.0 for valid contrast rows, or None (all valid).
    anchor_rows: int ``[Na]`` each anchor's row in the contrast set (excluded).
    num_levels: ``L``.
    block_rows: rows per block, or None / 0 for one block.

  Returns:
    float ``[L, Na]``.
  """
  global_rows = c.shape[1]

  def block(a_blk, rows_blk):
    logits = jnp.einsum("fnd,fmd->fnm", a_blk, c, precision=_EXACT) / temperature  # [F, n, Ng]
    not_self = jnp.arange(global_rows)[None, :] != rows_blk[:, None]
    peak = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    exp = jnp.where(not_self, jnp.exp(_nonpositive(logits - peak)), 0.0)
    if weight is None:
      denom = jnp.broadcast_to(jnp.sum(exp, axis=-1), (num_levels, a_blk.shape[1]))
    elif exp.shape[0] == 1:
      denom = jnp.matmul(exp[0], weight.T, precision=_EXACT).T
    else:
      denom = jnp.einsum("lnm,lm->ln", exp, weight, precision=_EXACT)
    return peak[..., 0] + jnp.log(jnp.maximum(denom, _TINY))                  # [L, n]

  num_anchors = a.shape[1]
  if not block_rows or block_rows >= num_anchors:
    return block(a, anchor_rows)
  num_blocks = -(-num_anchors // block_rows)
  pad = num_blocks * block_rows - num_anchors
  a_blocks = jnp.pad(a, ((0, 0), (0, pad), (0, 0))).reshape(
      a.shape[0], num_blocks, block_rows, a.shape[2]).transpose(1, 0, 2, 3)
  row_blocks = jnp.pad(anchor_rows, (0, pad), constant_values=-1).reshape(num_blocks,
                                                                         block_rows)
  out = jax.lax.map(lambda args: jax.checkpoint(block)(*args), (a_blocks, row_blocks))
  return out.transpose(1, 0, 2).reshape(num_levels, -1)[:, :num_anchors]


def _positive_terms(a, c, row_ids, anchor_ids, weight, anchor_ok, num_groups):
  """Per anchor and level: the sum of its dot products with its positives and
  their number, from per-group sums of the valid contrast rows (no ``N x N``).

  Args:
    a: ``[F, Na, D]`` anchors; c: ``[F, Ng, D]`` contrast rows (``F`` = 1 or L).
    row_ids, weight: ``[L, Ng]`` group of every contrast row, 1.0 where valid.
    anchor_ids, anchor_ok: ``[L, Na]`` the same for the anchors.
    num_groups: static bound on the ids.

  Returns:
    ``(dots [L, Na], counts [L, Na])``.
  """
  features_of = lambda x, level: x[0] if x.shape[0] == 1 else x[level]
  dots, counts = [], []
  # A Python loop over levels: one plain 2-D scatter each is ~10x faster on
  # CPU than the batched scatter a vmap over levels lowers to.
  for level in range(row_ids.shape[0]):
    ids, w = row_ids[level], weight[level]
    group_sum = jax.ops.segment_sum(features_of(c, level) * w[:, None], ids,
                                    num_segments=num_groups)
    group_count = jax.ops.segment_sum(w, ids, num_segments=num_groups)
    mine = anchor_ids[level]
    dots.append(jnp.sum(features_of(a, level) * group_sum[mine], axis=-1))
    counts.append(group_count[mine])
  self_dot = jnp.where(anchor_ok, jnp.sum(jnp.square(a), axis=-1), 0.0)      # [L, Na]
  return jnp.stack(dots) - self_dot, jnp.stack(counts) - anchor_ok


def _nonpositive(x):
  """``min(x, 0)`` in value with gradient exactly 1.

  ``logits - max(logits)`` is <= 0 in exact arithmetic, but XLA may fuse the
  temperature scaling and the subtraction into one FMA: at logits ~1e14 the
  peak entry then comes out at +1e7 and ``exp`` overflows (NaN gradients even
  where the entry is masked). A plain ``minimum`` would halve the gradient of
  ties, so the overshoot is removed outside the gradient.
  """
  return x - jax.lax.stop_gradient(jnp.maximum(x, 0.0))


def _global_mean(values, mask, axis_name):
  """Mean of ``values [L, Na]`` over ``mask``, per level, across devices.

  The value is the global mean, the same on every device. Its gradient gives
  each device exactly its rows of the global gradient (the transpose of the
  losses' ``all_gather`` adds up every device's part), whichever way the
  devices are mapped:

  - ``jax.shard_map`` (with its default ``check_vma=True``) tracks which
    values vary across devices and transposes ``psum`` exactly, so the global
    mean is ``psum`` of this device's share and the result is a replicated
    scalar (``out_specs=P()``).
  - ``jax.pmap`` (and ``shard_map`` with ``check_vma=False``) transposes
    ``psum`` to another ``psum``, which would count every device's share once
    per device, so the gradient flows through this device's share
    ``sum_local / count`` alone and the rest of the sum is a constant.
  """
  total = jnp.sum(jnp.where(mask, values, 0.0), axis=-1)
  count = jnp.sum(mask, axis=-1).astype(values.dtype)
  if axis_name is None:
    return total / jnp.maximum(count, 1.0)
  share = total / jnp.maximum(jax.lax.psum(count, axis_name), 1.0)
  if varies_over(share, axis_name):
    return jax.lax.psum(share, axis_name)
  return share + jax.lax.stop_gradient(jax.lax.psum(share, axis_name) - share)


def _gather(x, axis_name):
  """All-gathers ``x`` along axis 0 (tiled); returns it and this device's offset."""
  if axis_name is None:
    return x, 0
  gathered = jax.lax.all_gather(x, axis_name, axis=0, tiled=True)
  return gathered, jax.lax.axis_index(axis_name) * x.shape[0]


def _mean_over_devices(x, axis_name):
  return x if axis_name is None else jax.lax.pmean(x, axis_name)


def _check_features(x: Any, name: str) -> jnp.ndarray:
  x = jnp.asarray(x)
  if x.ndim != 3:
    raise ValueError(f"{name} must have shape [B, V, D], got {list(x.shape)}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"{name} must be floating point, got {x.dtype}")
  if 0 in x.shape:
    raise ValueError(f"{name} must be non-empty, got shape {list(x.shape)}")
  # float32 for float32 and narrower inputs (bf16, fp16); float64 stays float64.
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_labels(labels: Any, batch: int, ndim: int) -> jnp.ndarray:
  labels = jnp.asarray(labels)
  want = "[B]" if ndim == 1 else "[B, H]"
  if labels.ndim != ndim or labels.shape[0] != batch or (ndim == 2 and labels.shape[1] < 1):
    raise ValueError(f"labels must have shape {want} with B = {batch}, got {list(labels.shape)}")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"labels must be integers, got {labels.dtype}")
  return labels.astype(jnp.int32)


def _check_temperatures(temperature, base_temperature):
  for name, value in (("temperature", temperature), ("base_temperature", base_temperature)):
    if isinstance(value, (int, float, np.floating)) and not value > 0:
      raise ValueError(f"{name} must be positive, got {value}")
