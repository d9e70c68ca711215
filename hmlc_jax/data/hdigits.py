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


def sample_layout(sources: list, size: int, rng) -> dict:
  """Random composition of ``size`` composites, balanced over the 100 paths.

  Returns a dict of int arrays ``[size]``: ``category``, ``path``, ``big``
  and ``small`` (source image indices of the class and category digits), and
  ``offsets`` ``[size, 2]`` (top-left row, column of the pasted 8x8 digit).
  """
  paths = rng.permutation(np.arange(size) % 100)
  category, klass = paths // 10, paths % 10
  big, small = pick_sources(sources, klass, rng), pick_sources(sources, category, rng)
  offsets = rng.integers(0, CANVAS - DIGIT + 1, size=(size, 2))
  return dict(category=category, path=paths, big=big, small=small, offsets=offsets)


def upscaled(images: np.ndarray) -> np.ndarray:
  """float ``[n, 8, 8]`` -> float ``[n, 32, 32]``, bilinear."""
  up = upscale_matrix(DIGIT, CANVAS)
  return np.einsum("ij,njk,lk->nil", up, images, up)


def patch_index(offsets: np.ndarray) -> tuple:
  """Fancy index of each composite's 8x8 pasted patch: use as ``canvas[index]``."""
  rows = offsets[:, 0, None] + np.arange(DIGIT)[None, :]               # [size, 8]
  cols = offsets[:, 1, None] + np.arange(DIGIT)[None, :]
  return np.arange(len(offsets))[:, None, None], rows[:, :, None], cols[:, None, :]


def render(images: np.ndarray, layout: dict) -> np.ndarray:
  """The composites of ``layout``: uint8 ``[size, 32, 32, 1]``."""
  canvas = upscaled(images[layout["big"]])
  index = patch_index(layout["offsets"])
  canvas[index] = np.maximum(canvas[index], images[layout["small"]])
  return np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8)[..., None]


def compose(images: np.ndarray, sources: list, size: int, rng) -> tuple:
  """Builds ``size`` composites balanced over the 100 (category, class) paths.

  Args:
    images: float ``[M, 8, 8]`` in [0, 1].
    sources: 10 index arrays into ``images``, one per digit.
    size: number of composites.

  Returns:
    (uint8 ``[size, 32, 32, 1]``, int32 labels ``[size, 2]``).
  """
  layout = sample_layout(sources, size, rng)
  return render(images, layout), labels_of(layout)


def labels_of(layout: dict) -> np.ndarray:
  """int32 ``[size, 2]``: (category, path)."""
  return np.stack([layout["category"], layout["path"]], axis=1).astype(np.int32)


def source_images() -> tuple:
  """scikit-learn's 1,797 digits as float ``[1797, 8, 8]`` in [0, 1], and their digits."""
  from sklearn.datasets import load_digits   # ships with scikit-learn: no download
  digits = load_digits()
  return digits.images.astype(np.float64) / 16.0, digits.target


def layouts(config: ml_collections.ConfigDict, targets: np.ndarray) -> tuple:
  """The (train, test) layouts of ``config`` (``seed``, sizes, ``test_fraction``)."""
  train_size = config.get("train_size", 20000)
  test_size = config.get("test_size", 5000)
  for field, value in (("train_size", train_size), ("test_size", test_size)):
    if value < 100:
      raise UserInputError(f"dataset.{field} must be at least 100 (one per leaf path), "
                           f"got {value}")
  rng = np.random.default_rng(config.get("seed", 0))
  train_src, test_src = split_sources(targets, config.get("test_fraction", 0.3), rng)
  return sample_layout(train_src, train_size, rng), sample_layout(test_src, test_size, rng)


def load(config: ml_collections.ConfigDict) -> Dataset:
  """Builds hdigits from ``config`` (fields ``seed``, ``train_size``, ``test_size``)."""
  images, targets = source_images()
  train, test = layouts(config, targets)
  num_classes = (10, 100)
  return Dataset(name="hdigits", kind="image",
                 train_x=render(images, train),
                 train_y=check_labels(labels_of(train), num_classes, "train"),
                 test_x=render(images, test),
                 test_y=check_labels(labels_of(test), num_classes, "test"),
                 num_classes=num_classes, level_names=("category", "class"))
