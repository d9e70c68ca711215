"""Label utilities: tree validation, prefix groups, HMLC survivors, level weights."""
import math

import jax
import numpy as np
import pytest

from hmlc_jax import hierarchy
from tests.helpers import tree_labels


def test_validate_tree_accepts_a_tree_and_names_the_offending_class():
  hierarchy.validate_tree(np.array([[0, 0], [0, 1], [1, 2], [1, 2]]))
  with pytest.raises(ValueError, match="class 1 at level 1 sits under both"):
    hierarchy.validate_tree(np.array([[0, 0], [0, 1], [1, 1]]))
  with pytest.raises(ValueError, match="integers"):
    hierarchy.validate_tree(np.zeros((3, 2)))


def test_prefix_group_ids_encode_prefix_equality():
  rng = np.random.default_rng(0)
  y = tree_labels(rng, 30, 3)
  ids = np.asarray(hierarchy.prefix_group_ids(y))
  for h in range(3):
    same_prefix = np.all(y[:, None, :h + 1] == y[None, :, :h + 1], axis=-1)
    np.testing.assert_array_equal(ids[h][:, None] == ids[h][None, :], same_prefix)


def _survivors_by_unique(labels):
  """Survivor sets of the reference procedure, traced through sorted unique."""
  num_levels = labels.shape[1]
  rows = np.concatenate([labels, np.arange(len(labels))[:, None]], axis=1)
  index = np.arange(len(labels))
  out = []
  for level in range(1, num_levels + 1):
    mask = np.zeros(len(labels), bool)
    mask[index] = True
    out.append(mask)
    layer = rows.copy()
    layer[:, num_levels + 1 - level:] = 0
    _, first = np.unique(layer, axis=0, return_index=True)
    rows, index = rows[first], index[first]
  return np.stack(out)


def _survivors_earliest_everywhere(labels):
  """A plausible but wrong rule: keep the earliest example at every level."""
  num_levels = labels.shape[1]
  alive, out = np.ones(len(labels), bool), []
  for level in range(1, num_levels + 1):
    out.append(alive.copy())
    keep = num_levels + 1 - level
    seen = set()
    for i in range(len(labels)):
      key = tuple(labels[i, :keep])
      if alive[i]:
        alive[i] = key not in seen
        seen.add(key)
  return np.stack(out)


_survivors = jax.jit(lambda y: hierarchy.hmlc_survivors(y, hierarchy.prefix_group_ids(y)))


@pytest.mark.parametrize("num_levels", [2, 3, 4])
def test_hmlc_survivors_follow_the_reference_procedure(num_levels):
  differs_from_naive = False
  for seed in range(20):
    rng = np.random.default_rng(seed)
    y = tree_labels(rng, [2, 9, 24, 39][seed % 4], num_levels)
    got = np.asarray(_survivors(y))
    np.testing.assert_array_equal(got, _survivors_by_unique(y))
    differs_from_naive |= not np.array_equal(got, _survivors_earliest_everywhere(y))
  # From H = 3 on, the smallest-dropped-label rule is not "earliest everywhere".
  assert differs_from_naive == (num_levels >= 3)


def test_level_weights():
  np.testing.assert_allclose(hierarchy.level_weights("uniform", 4), np.full(4, 0.25))
  exp = np.array([math.exp(1 / 3), math.exp(1 / 2), math.exp(1)])
  np.testing.assert_allclose(hierarchy.level_weights("exp", 3), exp / exp.sum())
  np.testing.assert_allclose(hierarchy.level_weights([1, 2], 2), [1.0, 2.0])
  with pytest.raises(ValueError, match="2 entries but the labels have 3 levels"):
    hierarchy.level_weights([1, 2], 3)
  with pytest.raises(ValueError, match="non-negative"):
    hierarchy.level_weights([1, -2], 2)
  with pytest.raises(ValueError, match="unknown level_weights 'cubic'"):
    hierarchy.level_weights("cubic", 2)
  np.testing.assert_allclose(hierarchy.level_weights("0.2, 0.3,0.5", 3), [0.2, 0.3, 0.5])
  with pytest.raises(ValueError, match="not a comma-separated list"):
    hierarchy.level_weights("0.2,x", 2)
