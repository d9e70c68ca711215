"""Label hierarchies: validation, prefix groups, HMLC survivor sets, level weights.

Labels are int arrays ``[B, H]``; column 0 is the coarsest level and column
``H - 1`` the finest. The level-``h`` label of an example is its path prefix
``labels[:, :h + 1]``.

Everything that runs inside a loss has static shapes: a group is encoded as
the dense rank of its prefix, in ``[0, B)``, which ``segment_sum`` and
``segment_min`` take with ``num_segments=B``; the functions are jit-, vmap-
and pmap-safe.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

Penalty = Union[str, Callable[[float], float]]
LevelWeights = Union[str, Sequence[float]]


def validate_tree(labels: np.ndarray) -> None:
  """Checks that hierarchical labels form a tree (host-side, on load).

  Args:
    labels: int array ``[N, H]``, coarsest level first.

  Raises:
    ValueError: naming the first class that sits under two parents, or a
      malformed array.
  """
  labels = np.asarray(labels)
  if labels.ndim != 2 or labels.shape[1] < 1:
    raise ValueError(f"labels must have shape [N, H] with H >= 1, got {labels.shape}")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
  for level in range(1, labels.shape[1]):
    parents = {}
    for path in np.unique(labels[:, :level + 1], axis=0):
      child, parent = int(path[-1]), tuple(int(p) for p in path[:-1])
      if parents.setdefault(child, parent) != parent:
        raise ValueError(
            f"labels are not a tree: class {child} at level {level} sits under "
            f"both {parents[child]} and {parent}")


def prefix_group_ids(labels: jnp.ndarray) -> jnp.ndarray:
  """Dense rank of every example's path prefix, per level.

  Args:
    labels: int ``[B, H]``.

  Returns:
    int32 ``[H, B]`` in ``[0, B)``: entry ``[h, i]`` is the rank of example
    ``i``'s prefix ``labels[i, :h + 1]`` among the distinct prefixes of the
    batch in lexicographic order, so two examples share a level-``h`` label
    exactly when their ids at ``h`` are equal. ``O(B log B)`` per level.
  """
  num_examples, num_levels = labels.shape
  ids = jnp.zeros((num_examples,), jnp.int32)
  out = []
  for h in range(num_levels):
    order = jnp.lexsort((labels[:, h], ids))        # by parent rank, then own label
    parent, own = ids[order], labels[order, h]
    starts = jnp.concatenate([jnp.ones((1,), bool),
                              (parent[1:] != parent[:-1]) | (own[1:] != own[:-1])])
    ids = jnp.zeros_like(ids).at[order].set(jnp.cumsum(starts, dtype=jnp.int32) - 1)
    out.append(ids)
  return jnp.stack(out)


def hmlc_survivors(labels: jnp.ndarray, prefix_ids: jnp.ndarray) -> jnp.ndarray:
  """Examples that take part in each level of the HMC/HCE/HMCE losses.

  Level ``l = 1..H`` keeps the first ``k = H + 1 - l`` label columns (plus the
  implicit instance column dropped at ``l = 1``). After level ``l`` the
  survivors are reduced to one representative per distinct kept prefix:
  at ``l = 1`` the earliest example in batch order, at later levels the one
  whose label in the column just dropped (column ``k``) is smallest. This is
  the selection the reference implementation makes through sorted
  ``unique``; here it is a static mask built with ``O(B)`` segment minima.

  Args:
    labels: int ``[B, H]``.
    prefix_ids: ``prefix_group_ids(labels)``, int ``[H, B]``.

  Returns:
    bool ``[H, B]``: row ``l - 1`` marks the survivors that level ``l`` sees.
  """
  num_examples, num_levels = labels.shape
  alive = jnp.ones((num_examples,), dtype=bool)
  survivors = [alive]
  for level in range(1, num_levels):
    kept = num_levels + 1 - level              # label columns kept at this level
    # Keys are distinct among the living members of a group: at level 1 the
    # batch index, later the label in column `kept`, where living members of
    # one kept-prefix group differ (their longer prefixes are distinct).
    key = jnp.arange(num_examples) if level == 1 else labels[:, kept]
    group = prefix_ids[kept - 1]
    best = jax.ops.segment_min(jnp.where(alive, key, jnp.iinfo(key.dtype).max), group,
                               num_segments=num_examples)
    alive = alive & (key == best[group])
    survivors.append(alive)
  return jnp.stack(survivors)


def hmlc_penalties(num_levels: int, penalty: Penalty) -> list[float]:
  """Per-level multipliers ``penalty(1 / l)`` for ``l = 1..H`` (finest first).

  ``"exp"`` is ``e**x`` (what the authors' training script passes), ``"pow2"``
  is ``2**x`` (their default); a callable is applied as given.
  """
  fn = _penalty_fn(penalty)
  return [fn(1.0 / level) for level in range(1, num_levels + 1)]


def level_weights(scheme: LevelWeights, num_levels: int) -> np.ndarray:
  """Weights ``w_h`` for the G-HMLC / A-HMLC level losses, coarsest first.

  Named schemes are normalised to sum to one, so the total stays on the scale
  of one SupCon loss whatever ``H`` is: ``"uniform"`` is ``1 / H``; ``"exp"``
  and ``"pow2"`` use the HMC penalties ``penalty(1 / l)`` with ``l = H - h``
  (the finest level has ``l = 1`` and the largest weight). A sequence of
  ``H`` numbers (or a string of them joined by commas, as a command-line
  flag gives them: ``"0.2,0.3,0.5"``) is used as given.

  Returns:
    float64 ``[H]``.
  """
  if isinstance(scheme, str) and "," in scheme:
    try:
      scheme = [float(w) for w in scheme.split(",")]
    except ValueError:
      raise ValueError(f"level_weights {scheme!r} is not a comma-separated list of "
                       "numbers") from None
  if isinstance(scheme, str):
    if scheme not in ("uniform", "exp", "pow2"):
      raise ValueError(f"unknown level_weights {scheme!r}; use 'uniform', 'exp', 'pow2' "
                       "or a list of one weight per level")
    if scheme == "uniform":
      raw = np.ones(num_levels)
    else:
      raw = np.asarray(hmlc_penalties(num_levels, scheme)[::-1], dtype=np.float64)
    return raw / raw.sum()
  weights = np.asarray(list(scheme), dtype=np.float64)
  if weights.shape != (num_levels,):
    raise ValueError(
        f"level_weights has {weights.size} entries but the labels have {num_levels} levels")
  if not np.all(np.isfinite(weights)) or np.any(weights < 0):
    raise ValueError(f"level_weights must be finite and non-negative, got {list(weights)}")
  return weights


def _penalty_fn(penalty: Penalty) -> Callable[[float], float]:
  if callable(penalty):
    return penalty
  if penalty == "exp":
    return math.exp
  if penalty == "pow2":
    return lambda x: 2.0 ** x
  raise ValueError(f"unknown layer_penalty {penalty!r}; use 'exp', 'pow2' or a callable")
