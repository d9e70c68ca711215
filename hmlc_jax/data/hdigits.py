"""Hierarchical digits: the embedded default data set, built offline.

The hierarchical-MNIST construction of the G-HMLC paper
(`hmlc_jax.data.composite`) with the 1,797 real 8x8 handwritten digits that
scikit-learn ships (`load_digits`): on a 32x32 canvas the *class* digit,
upscaled to 16x16, in the centre; the *category* digit at native size (8x8)
at a random spot around it (its patch misses the class digit's square less a
1-pixel rim, which the digits leave blank), merged by maximum. Both stay
legible: an earlier build that pasted the small digit anywhere over a class
digit filling the canvas lost 38% of the small digit's ink under the large
one's stroke (``benchmarks/hdigits_ceiling.py``).

Labels are ``[category, 10 * category + class]`` (10 categories, 100 leaf
paths; ``dataset.level_order="class_first"`` swaps the digits' roles). Train
and test use disjoint source images, split per digit. Everything is
deterministic in ``dataset.seed``.
"""
from __future__ import annotations

import ml_collections
import numpy as np

from hmlc_jax.data import Dataset, composite

CANVAS = 32
BUILDS_VALIDATION = True    # eval_split="validation" is handled here, not generically
DIGIT = 8
BIG = 16                    # side of the central class digit
KEEP_OUT = 1                # the small digit's patch misses BIG less this rim
TRAIN_SIZE, TEST_SIZE = 20000, 5000    # what train_size / test_size 0 give


def source_images() -> tuple:
  """scikit-learn's 1,797 digits: float ``[1797, 8, 8]`` in [0, 1], and int digits."""
  from sklearn.datasets import load_digits   # ships with scikit-learn: no download
  digits = load_digits()
  return digits.images.astype(np.float64) / 16.0, digits.target


def layouts(config: ml_collections.ConfigDict, targets: np.ndarray) -> tuple:
  """The (train, test) layouts of ``config`` (``seed``, sizes, ``test_fraction``).

  With ``eval_split="validation"`` the "test" layout is a validation set made
  from held-out training source images (``validation_fraction`` per digit).
  """
  train_size, test_size = config.train_size or TRAIN_SIZE, config.test_size or TEST_SIZE
  composite.check_sizes(train_size, test_size)
  rng = np.random.default_rng(config.seed)
  train_src, test_src = composite.split_sources(targets, config.test_fraction, rng)
  if config.eval_split == "validation":     # the test images stay unseen
    train_src, test_src = composite.hold_out(train_src, config.validation_fraction, rng)
  return tuple(composite.sample_layout(src, size, rng, CANVAS, DIGIT, BIG, KEEP_OUT)
               for src, size in ((train_src, train_size), (test_src, test_size)))


def load(config: ml_collections.ConfigDict) -> Dataset:
  """Builds hdigits from ``config`` (``seed``, ``train_size``, ``test_size``,
  ``level_order``)."""
  images, targets = source_images()
  return composite.composite_dataset("hdigits", (images, images), layouts(config, targets), CANVAS,
                           config.level_order)
