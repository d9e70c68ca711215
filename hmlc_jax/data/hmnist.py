"""Hierarchical MNIST: the G-HMLC paper's construction from real MNIST.

Two MNIST digits per image (`hmlc_jax.data.composite`): the *class* digit
upscaled (bilinear) to fill a ``dataset.canvas`` square (default 56), the
*category* digit at native size (28x28) at a random spot, merged by maximum.
Train composites use MNIST's train images only and test composites its test
images only. Labels ``[category, 10 * category + class]`` (or the digits
swapped with ``dataset.level_order="class_first"``); deterministic in
``dataset.seed``. MNIST comes through tensorflow-datasets (``mnist``).
"""
from __future__ import annotations

from typing import Tuple

import ml_collections
import numpy as np

from hmlc_jax.data import Dataset, composite
from hmlc_jax.data.tfds_io import data_dir_of, read_splits
from hmlc_jax.errors import UserInputError

DIGIT = 28
BUILDS_VALIDATION = True    # eval_split="validation" is handled here, not generically
TRAIN_SIZE, TEST_SIZE = 60000, 10000   # what train_size / test_size 0 give


def to_digits(split: dict, name: str) -> Tuple[np.ndarray, np.ndarray]:
  """(float images ``[N, 28, 28]`` in [0, 1], int digits ``[N]``) of one MNIST split."""
  images = np.asarray(split["image"])
  if images.ndim != 4 or images.shape[1:] != (DIGIT, DIGIT, 1):
    raise UserInputError(f"MNIST {name} images must have shape [N, 28, 28, 1], got "
                         f"{list(images.shape)}; delete the prepared data and load again")
  digits = np.asarray(split["label"]).astype(np.int64)
  if digits.size and (digits.min() < 0 or digits.max() > 9):
    raise UserInputError(f"MNIST {name} labels must lie in [0, 10), found "
                         f"{digits.min()}..{digits.max()}")
  missing = sorted(set(range(10)) - set(digits.tolist()))
  if missing:
    raise UserInputError(f"MNIST {name} split has no image of digit(s) {missing}")
  return images[..., 0].astype(np.float64) / 255.0, digits


def load(config: ml_collections.ConfigDict) -> Dataset:
  """Builds hmnist (fields ``data_dir``, ``download``, ``seed``, ``train_size``,
  ``test_size``, ``canvas``, ``level_order``, ``eval_split``)."""
  canvas = config.canvas
  if not isinstance(canvas, int) or canvas < DIGIT:
    raise UserInputError(f"dataset.canvas must be an int of at least {DIGIT}, got {canvas!r}")
  train_size, test_size = config.train_size or TRAIN_SIZE, config.test_size or TEST_SIZE
  composite.check_sizes(train_size, test_size)
  train, test = read_splits("mnist", "MNIST", data_dir_of(config),
                            bool(config.download))
  (train_images, train_digits), (test_images, test_digits) = (
      to_digits(train, "train"), to_digits(test, "test"))
  rng = np.random.default_rng(config.seed)
  train_src, test_src = (composite.sources_by_digit(train_digits),
                         composite.sources_by_digit(test_digits))
  if config.eval_split == "validation":     # held-out MNIST train images
    train_src, test_src = composite.hold_out(train_src, config.validation_fraction, rng)
    test_images = train_images
  layouts = tuple(composite.sample_layout(src, size, rng, canvas, DIGIT)
                  for src, size in ((train_src, train_size), (test_src, test_size)))
  return composite.composite_dataset("hmnist", (train_images, test_images), layouts, canvas,
                           config.level_order)
