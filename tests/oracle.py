"""Float64 NumPy oracles written from the loss equations (DESIGN.md, "Losses").

Deliberately literal and independent of hmlc_jax: rows are laid out view-major
(all first views, then all second views), anchors are looped over one by one,
and the HMC/HCE/HMCE survivor sets are produced the way the reference does it
(sorted unique rows, first occurrence kept, survivors reordered), not with the
static masks the library uses.
"""
import math

import numpy as np


def supcon_rows(x, same, temperature, base_temperature, valid=None):
  """Mean SupCon term over anchors with a positive.

  x: [N, D] compared rows; same: [N, N] bool label agreement; valid: [N] rows
  taking part (others are neither anchor nor contrast).
  """
  n = x.shape[0]
  valid = np.ones(n, bool) if valid is None else valid
  logits = (x @ x.T) / temperature
  per_anchor = []
  for i in range(n):
    if not valid[i]:
      continue
    others = valid.copy()
    others[i] = False
    positives = same[i] & others
    if not positives.any():
      continue
    log_denom = math.log(np.sum(np.exp(logits[i, others])))
    per_anchor.append(-(temperature / base_temperature)
                      * np.mean(logits[i, positives] - log_denom))
  return float(np.mean(per_anchor)) if per_anchor else 0.0


def view_major(features):
  """[B, V, D] -> [V * B, D] and the example index of every row."""
  b, v, _ = features.shape
  rows = np.concatenate([features[:, k] for k in range(v)], axis=0)
  return rows, np.tile(np.arange(b), v)


def supcon(features, labels=None, temperature=0.07, base_temperature=0.07):
  x, example = view_major(np.asarray(features, np.float64))
  key = example if labels is None else np.asarray(labels)[example]
  return supcon_rows(x, key[:, None] == key[None, :], temperature, base_temperature)


def hmlc(features, labels, kind="hmce", temperature=0.07, base_temperature=0.07,
         penalty=math.exp):
  """Procedural HMC/HCE/HMCE following the reference algorithm step by step."""
  feats = np.asarray(features, np.float64)
  labels = np.asarray(labels)
  num_levels = labels.shape[1]
  labels = np.concatenate([labels, np.arange(len(labels))[:, None]], axis=1)
  total, worst = 0.0, -np.inf
  for level in range(1, num_levels + 1):
    layer = labels.copy()
    layer[:, num_levels + 1 - level:] = 0
    x, example = view_major(feats)
    rows = layer[example]
    same = np.all(rows[:, None, :] == rows[None, :, :], axis=-1)
    loss = supcon_rows(x, same, temperature, base_temperature)
    if kind in ("hce", "hmce"):
      loss = max(loss, worst)
    total += (penalty(1.0 / level) if kind in ("hmc", "hmce") else 1.0) * loss
    worst = max(worst, loss)
    _, first = np.unique(layer, axis=0, return_index=True)   # sorted rows, earliest index
    labels, feats = labels[first], feats[first]
  return total / (num_levels + 1)


def normalise(x):
  norm = np.linalg.norm(x, axis=-1, keepdims=True)
  return np.where(norm > 0, x / np.where(norm > 0, norm, 1.0), 0.0)


def masked_levels(embeddings, masks, labels, temperature=0.07, base_temperature=0.07,
                  weights=None, full_weight=0.0, enforce_hierarchy=False):
  """G-HMLC / A-HMLC given the masks: sum_h w_h SupCon_h(normalise(z * M_h))."""
  z = np.asarray(embeddings, np.float64)
  masks = np.asarray(masks, np.float64)
  labels = np.asarray(labels)
  num_levels = labels.shape[1]
  weights = np.full(num_levels, 1.0 / num_levels) if weights is None else weights
  losses = []
  for h in range(num_levels):
    x, example = view_major(z * masks[:, :, h])
    valid = np.linalg.norm(x, axis=-1) > 0
    prefix = labels[example, :h + 1]
    same = np.all(prefix[:, None, :] == prefix[None, :, :], axis=-1)
    losses.append(supcon_rows(normalise(x), same, temperature, base_temperature, valid))
  if enforce_hierarchy:
    for h in range(num_levels - 2, -1, -1):
      losses[h] = max(losses[h], losses[h + 1])
  total = float(np.dot(weights, losses))
  if full_weight:
    total += full_weight * supcon(normalise(z), labels[:, -1], temperature, base_temperature)
  return total, losses


def _split_segments(u, k):
  """Greedy between-variance cuts of the sorted values (`fit_gmm`'s "split"):
  ``k - 1`` times, the cut (between two sorted neighbours, inside a segment)
  that most increases ``n_l n_r / n (mean_l - mean_r)^2``."""
  us = np.sort(u)
  bounds = [0, len(u)]
  for _ in range(k - 1):
    best, best_gain = None, -np.inf
    for start, stop in zip(sorted(bounds)[:-1], sorted(bounds)[1:]):
      for cut in range(start + 1, stop):
        left, right = us[start:cut], us[cut:stop]
        gain = len(left) * len(right) / (stop - start) * (left.mean() - right.mean()) ** 2
        if gain > best_gain:
          best, best_gain = cut, gain
    bounds.append(best)
  cuts = sorted(bounds)[1:-1]
  thresholds = [(us[c - 1] + us[c]) / 2 for c in cuts]
  return np.sum(u[:, None] > np.asarray(thresholds)[None, :], axis=1) if cuts else \
      np.zeros(len(u), int)


def gmm_em(x, k, num_iters=10, var_floor=1e-6, count_floor=1e-3, init="split", reseed=True):
  """1-D EM per row of ``x`` [R, N], in float64, from `fit_gmm`'s equations.

  Each row is standardised (mean 0; squared scale = variance + 1e-6 * second
  moment + 1e-20) and starts from hard segments: greedy between-variance cuts
  of the sorted values (``init="split"``) or equal-width bins over [min, max]
  (``"range"``). Then M-step / E-step pairs, where every component also holds
  ``count_floor`` pseudo-points at 0 of variance 1 and ``var_floor`` is added
  to every variance; with ``reseed``, after each M-step a component holding
  less than one point takes half of the living component with the largest
  weight x variance (means at +- one sd, half the weight and variance).
  Returns weights, means, variances [R, K] and responsibilities [R, N, K] in
  the units of ``x``.
  """
  x = np.asarray(x, np.float64)
  out = {name: [] for name in ("weights", "means", "variances", "responsibilities")}
  for row in x:
    centre = row.mean()
    scale2 = row.var() + 1e-6 * np.mean(row ** 2) + 1e-20
    u = (row - centre) / math.sqrt(scale2)
    if init == "split":
      segment = _split_segments(u, k)
    else:
      width = (u.max() - u.min()) / k
      segment = np.clip(np.floor((u - u.min()) / width) if width > 0 else np.zeros_like(u),
                        0, k - 1).astype(int)
    resp = np.zeros((len(u), k))
    resp[np.arange(len(u)), segment] = 1.0
    for step in range(num_iters + 1):
      points = resp.sum(0)
      counts = points + count_floor
      weights = counts / counts.sum()
      means = (resp * u[:, None]).sum(0) / counts
      variances = ((resp * (u[:, None] - means) ** 2).sum(0) + count_floor) / counts + var_floor
      for dead in range(k) if reseed else ():
        if points[dead] >= 1.0:
          continue
        living = [j for j in range(k) if j != dead and points[j] >= 1.0]
        j = max(living, key=lambda i: (weights[i] * variances[i], -i))
        sd = math.sqrt(variances[j])
        weights[j] /= 2
        variances[j] /= 2
        points[j] /= 2
        weights[dead], variances[dead], points[dead] = weights[j], variances[j], points[j]
        means[dead], means[j] = means[j] + sd, means[j] - sd
      log_joint = (np.log(weights) - 0.5 * np.log(2 * math.pi * variances)
                   - 0.5 * (u[:, None] - means) ** 2 / variances)
      log_joint -= log_joint.max(1, keepdims=True)
      resp = np.exp(log_joint) / np.exp(log_joint).sum(1, keepdims=True)
    out["weights"].append(weights)
    out["means"].append(centre + math.sqrt(scale2) * means)
    out["variances"].append(scale2 * variances)
    out["responsibilities"].append(resp)
  return {name: np.stack(values) for name, values in out.items()}


def clamped_assignment(x, argmax, k, min_dims, descending):
  """`hard_assignment` of one row: rank the values, cut the ranks where the
  argmax counts say, every cut moved so each level keeps ``min_dims``."""
  n = len(x)
  order = np.argsort(-x if descending else x, kind="stable")
  rank = np.empty(n, np.int64)
  rank[order] = np.arange(n)
  counts = np.bincount(argmax, minlength=k)
  cuts, previous, total = [], 0, 0
  for c in range(k - 1):
    total += counts[c]
    previous = int(np.clip(total, previous + min_dims, n - (k - 1 - c) * min_dims))
    cuts.append(previous)
  return np.searchsorted(np.asarray(cuts), rank, side="right")
