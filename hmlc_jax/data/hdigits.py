"""Hierarchical digits: the embedded default data set, built offline.

Follows the hierarchical-MNIST construction of the G-HMLC paper with the
1,797 real 8x8 handwritten digits that scikit-learn ships (`load_digits`):

* the *class* digit is upscaled to fill the 32x32 canvas (bilinear, 8 -> 32);
* the *category* digit is pasted at native size (8x8) at a random spot;
* the two are merged by a pixel-wise maximum.

Labels are ``[category, path]`` with ``path = 10 * category + class``: 10
categories at level 0 and 100 leaf paths at level 1, so the labels form a tree
(a class digit alone would sit under all ten categories). Train and test use
disjoint source images, split per digit. Everything is deterministic in
``dataset.seed``.
"""
from __future__ import annotations

import ml_collections
import numpy as np

from hmlc_jax.data import Dataset, check_labels
from hmlc_jax.errors import UserInputError

CANVAS = 32
DIGIT = 8


def upscale_matrix(n_in: int, n_out: int) -> np.ndarray:
  """Bilinear interpolation weights ``[n_out, n_in]`` (pixel centres aligned)."""
  centres = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
  weights = 1.0 - np.abs(centres[:, None] - np.arange(n_in)[None, :])
  weights = np.maximum(weights, 0.0)
  return weights / weights.sum(axis=1, keepdims=True)


def split_sources(digits: np.ndarray, test_fraction: float, rng) -> tuple:
  """Per digit, disjoint index sets of source images: (train, test) lists of 10 arrays."""
  train, test = [], []
  for d in range(10):
    idx = rng.permutation(np.flatnonzero(digits == d))
    n_test = int(round(test_fraction * len(idx)))
    test.append(idx[:n_test])
    train.append(idx[n_test:])
  return train, test


def pick_sources(sources: list, digits: np.ndarray, rng) -> np.ndarray:
  """One random source image index per entry of ``digits`` (uniform within its digit)."""
  sizes = np.array([len(s) for s in sources])
  starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  within = rng.integers(0, sizes[digits])
  return np.concatenate(sources)[starts[digits] + within]


def compose(images: np.ndarray, sources: list, size: int, rng) -> tuple:
  """Builds ``size`` composites balanced over the 100 (category, class) paths.

  Args:
    images: float ``[M, 8, 8]`` in [0, 1].
    sources: 10 index arrays into ``images``, one per digit.
    size: number of composites.

  Returns:
    (uint8 ``[size, 32, 32, 1]``, int32 labels ``[size, 2]``).
  """
  paths = rng.permutation(np.arange(size) % 100)
  category, klass = paths // 10, paths % 10
  big_src, small_src = pick_sources(sources, klass, rng), pick_sources(sources, category, rng)
  up = upscale_matrix(DIGIT, CANVAS)
  canvas = np.einsum("ij,njk,lk->nil", up, images[big_src], up)
  offsets = rng.integers(0, CANVAS - DIGIT + 1, size=(size, 2))
  rows = offsets[:, 0, None] + np.arange(DIGIT)[None, :]               # [size, 8]
  cols = offsets[:, 1, None] + np.arange(DIGIT)[None, :]
  n = np.arange(size)[:, None, None]
  canvas[n, rows[:, :, None], cols[:, None, :]] = np.maximum(
      canvas[n, rows[:, :, None], cols[:, None, :]], images[small_src])
  pixels = np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8)[..., None]
  return pixels, np.stack([category, paths], axis=1).astype(np.int32)


def load(config: ml_collections.ConfigDict) -> Dataset:
  """Builds hdigits from ``config`` (fields ``seed``, ``train_size``, ``test_size``)."""
  from sklearn.datasets import load_digits   # ships with scikit-learn: no download
  train_size = config.get("train_size", 20000)
  test_size = config.get("test_size", 5000)
  for field, value in (("train_size", train_size), ("test_size", test_size)):
    if value < 100:
      raise UserInputError(f"dataset.{field} must be at least 100 (one per leaf path), "
                           f"got {value}")
  digits = load_digits()
  images = digits.images.astype(np.float64) / 16.0
  rng = np.random.default_rng(config.get("seed", 0))
  train_src, test_src = split_sources(digits.target, config.get("test_fraction", 0.3), rng)
  train_x, train_y = compose(images, train_src, train_size, rng)
  test_x, test_y = compose(images, test_src, test_size, rng)
  num_classes = (10, 100)
  return Dataset(name="hdigits", kind="image",
                 train_x=train_x, train_y=check_labels(train_y, num_classes, "train"),
                 test_x=test_x, test_y=check_labels(test_y, num_classes, "test"),
                 num_classes=num_classes, level_names=("category", "class"))
