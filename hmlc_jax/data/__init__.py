"""Data sets with hierarchical labels.

Every loader returns a `Dataset`: inputs for train and test (NumPy arrays, or
image files read on access with ``dataset.stream``, `pipeline.LazyImages`),
labels int32 ``[N, H]`` with column 0 the coarsest level, validated as a
tree. The training loop takes batches from `pipeline.train_batches` and
augments them on the device (`hmlc_jax.data.augment`).
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Dict, Tuple

import ml_collections
import numpy as np

from hmlc_jax import hierarchy
from hmlc_jax.data.pipeline import take
from hmlc_jax.errors import UserInputError

DATASETS = ("hdigits", "hfashion", "hmnist", "cifar100", "modelnet40", "shapes3d", "folder")
EVAL_SPLITS = ("test", "validation")


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A data set held in host memory.

  Attributes:
    name: registry name, e.g. "hdigits".
    kind: "image" (``x`` uint8 ``[N, H, W, C]``) or "points" (``x`` float32
      ``[N, P, 3]``, centred, inside the unit ball).
    train_x, train_y: training inputs and int32 labels ``[N, H]``.
    test_x, test_y: test inputs and labels.
    num_classes: classes per level (labels of level h lie in ``[0, num_classes[h])``).
    level_names: one name per level, coarsest first.
    extra_labels: further labels to probe that are no level of the hierarchy,
      name -> (train int ``[N]``, test int ``[M]``, number of classes); e.g.
      a composite digit set's fine digit on its own.
    class_names: per level, the name of each class id (optional; empty when
      the data set has none).
  """
  name: str
  kind: str
  train_x: np.ndarray
  train_y: np.ndarray
  test_x: np.ndarray
  test_y: np.ndarray
  num_classes: Tuple[int, ...]
  level_names: Tuple[str, ...]
  extra_labels: Dict[str, Tuple[np.ndarray, np.ndarray, int]] = dataclasses.field(
      default_factory=dict)
  class_names: Tuple[Tuple[str, ...], ...] = ()

  def validated(self) -> "Dataset":
    """This data set with both label arrays checked by `check_labels`."""
    return dataclasses.replace(
        self, train_y=check_labels(self.train_y, self.num_classes, "train"),
        test_y=check_labels(self.test_y, self.num_classes, "test"))

  @property
  def num_levels(self) -> int:
    return self.train_y.shape[1]


def check_labels(labels: np.ndarray, num_classes, split: str) -> np.ndarray:
  """Returns labels as int32 ``[N, H]``; UserInputError if out of range or not a tree."""
  labels = np.asarray(labels)
  if labels.ndim != 2 or labels.shape[1] != len(num_classes):
    raise UserInputError(f"{split} labels must have shape [N, {len(num_classes)}], "
                         f"got {list(labels.shape)}")
  for level, n in enumerate(num_classes):
    column = labels[:, level]
    if column.size and (column.min() < 0 or column.max() >= n):
      raise UserInputError(f"{split} labels of level {level} must lie in [0, {n}), "
                           f"found {column.min()}..{column.max()}")
  try:
    hierarchy.validate_tree(labels)
  except ValueError as e:
    raise UserInputError(f"{split} labels: {e}") from None
  return labels.astype(np.int32)


def load_dataset(config: ml_collections.ConfigDict) -> Dataset:
  """Loads ``config.dataset.name``: one of DATASETS, or ``"module.path:function"``,
  a loader of the user's own that takes the ``dataset`` config and returns a
  `Dataset` (its labels are validated here).

  ``eval_split="validation"`` replaces the test split by a validation split
  held out of the training data (``validation_fraction``), for choosing
  settings without looking at the test split.
  """
  if config.name not in DATASETS and ":" not in str(config.name):
    raise UserInputError(f"unknown dataset.name {config.name!r}; choose one of "
                         f"{list(DATASETS)}, or give your own loader as "
                         f"'package.module:function'")
  split = config.eval_split
  if split not in EVAL_SPLITS:
    raise UserInputError(f"dataset.eval_split must be one of {list(EVAL_SPLITS)}, got {split!r}")
  fraction = config.validation_fraction
  if split == "validation" and not 0.0 < fraction < 1.0:
    raise UserInputError(f"dataset.validation_fraction must lie in (0, 1), got {fraction!r}")
  if ":" in config.name:
    module, dataset = None, _user_loader(config.name)(config)
    if not isinstance(dataset, Dataset):
      raise UserInputError(f"dataset.name {config.name}: the loader returned "
                           f"{type(dataset).__name__}, not a hmlc_jax.data.Dataset")
    dataset = dataset.validated()
  else:
    module = importlib.import_module(f"hmlc_jax.data.{config.name}")  # only what is used
    dataset = module.load(config)
  ratio = config.get("imbalance_ratio", 1.0)
  if ratio != 1.0:
    dataset = long_tailed(dataset, ratio, config.get("imbalance_level", 0), config.seed)
  if split == "validation" and not getattr(module, "BUILDS_VALIDATION", False):
    dataset = hold_out_validation(dataset, fraction, config.seed)
  return dataset


def long_tailed(dataset: Dataset, ratio: float, level: int, seed: int) -> Dataset:
  """``dataset`` with its training split subsampled to a long tail at ``level``.

  The groups (classes) of ``level`` that have training examples are ranked by
  their count, most first (ties by id). The group of rank ``r`` of ``G`` keeps
  ``n_0 * ratio ** (-r / (G - 1))`` examples, ``n_0`` the largest head count
  every group can supply, so the counts fall exponentially from head to tail
  and largest / smallest is ``ratio`` (up to rounding) whatever the groups'
  natural sizes. Which examples a group keeps is drawn uniformly, seeded by
  ``seed``, so its subclasses keep their proportions on average. The test
  split is left as it is.
  """
  if not ratio >= 1.0:
    raise UserInputError(f"dataset.imbalance_ratio must be at least 1, got {ratio!r}")
  if not 0 <= level < dataset.num_levels:
    raise UserInputError(f"dataset.imbalance_level must lie in [0, {dataset.num_levels}), "
                         f"got {level!r}")
  sizes = np.bincount(dataset.train_y[:, level], minlength=dataset.num_classes[level])
  present = np.flatnonzero(sizes)
  ranked = present[np.argsort(-sizes[present], kind="stable")]
  decay = ratio ** (-np.arange(len(ranked)) / max(len(ranked) - 1, 1))
  head = np.min(sizes[ranked] / decay)
  rng = np.random.default_rng([seed, 7919])
  keep = []
  for group, share in zip(ranked, decay):
    rows = np.flatnonzero(dataset.train_y[:, level] == group)
    count = min(len(rows), max(1, int(round(head * share))))
    keep.append(rng.permutation(rows)[:count])
  keep = np.sort(np.concatenate(keep))
  extra = {k: (y[keep], test, n) for k, (y, test, n) in dataset.extra_labels.items()}
  return dataclasses.replace(dataset, train_x=take(dataset.train_x, keep),
                             train_y=dataset.train_y[keep], extra_labels=extra)


def _user_loader(name: str):
  """The function ``module:function`` names; UserInputError when there is none."""
  module_name, _, function = name.partition(":")
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise UserInputError(f"dataset.name {name}: cannot import {module_name} ({e}); "
                         f"is it on PYTHONPATH?") from None
  loader = getattr(module, function, None)
  if not callable(loader):
    raise UserInputError(f"dataset.name {name}: {module_name} has no function {function!r}")
  return loader


def hold_out_validation(dataset: Dataset, fraction: float, seed: int) -> Dataset:
  """``dataset`` with its test split replaced by a random ``fraction`` of train."""
  order = np.random.default_rng(seed).permutation(len(dataset.train_y))
  n_val = max(1, int(round(fraction * len(order))))
  train, val = order[n_val:], order[:n_val]
  extra = {k: (y[train], y[val], n) for k, (y, _, n) in dataset.extra_labels.items()}
  return dataclasses.replace(dataset, train_x=take(dataset.train_x, train),
                             train_y=dataset.train_y[train], test_x=take(dataset.train_x, val),
                             test_y=dataset.train_y[val], extra_labels=extra)
