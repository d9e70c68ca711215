"""CIFAR-100 through tensorflow-datasets: 20 superclasses -> 100 classes.

The ``cifar100`` builder of tensorflow-datasets gives every image a
``coarse_label`` (superclass, 20) and a ``label`` (class, 100); they become
the label columns ``[superclass, class]``. The whole split is read into host
memory at once (50,000 + 10,000 uint8 images of 32x32x3, 180 MB), or, with
``dataset.stream``, read batch by batch from the data set prepared as
ArrayRecord (`tfds_io.stream_splits`; only the labels are held).

TensorFlow and tensorflow-datasets are imported only when `load` runs, and
TensorFlow is kept off the GPUs so that it leaves accelerator memory to JAX.
"""
from __future__ import annotations

from typing import Tuple

import ml_collections
import numpy as np

from hmlc_jax.data import Dataset, check_labels
from hmlc_jax.data.pipeline import LazyImages
from hmlc_jax.data.tfds_io import data_dir_of, read_splits, stream_splits
from hmlc_jax.errors import UserInputError

NUM_CLASSES = (20, 100)


def to_arrays(split: dict, name: str) -> Tuple[np.ndarray, np.ndarray]:
  """(uint8 images ``[N, 32, 32, 3]``, int32 labels ``[N, 2]``) of one split."""
  images = split["image"]
  if not isinstance(images, LazyImages):
    images = np.asarray(images, dtype=np.uint8)
  if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
    raise UserInputError(f"CIFAR-100 {name} images must have shape [N, 32, 32, 3], "
                         f"got {list(images.shape)}; delete the prepared data and load again")
  labels = np.stack([np.asarray(split["coarse_label"]), np.asarray(split["label"])], axis=1)
  return images, check_labels(labels, NUM_CLASSES, name)


def load(config: ml_collections.ConfigDict) -> Dataset:
  """Loads CIFAR-100 (fields ``data_dir``, ``download``).

  Args:
    config: the ``dataset`` config section. ``data_dir`` "" means the
      tensorflow-datasets default (``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``); ``download`` (default True) lets
      tensorflow-datasets fetch and prepare the data when it is missing;
      ``stream`` reads the images batch by batch (`tfds_io.stream_splits`).

  Returns:
    A `Dataset` of kind "image": x uint8 ``[N, 32, 32, 3]``, labels
    ``[superclass, class]`` with ``num_classes=(20, 100)``.
  """
  read = stream_splits if config.get("stream", False) else read_splits
  train, test = read("cifar100", "CIFAR-100", data_dir_of(config), bool(config.download))
  train_x, train_y = to_arrays(train, "train")
  test_x, test_y = to_arrays(test, "test")
  return Dataset(name="cifar100", kind="image", train_x=train_x, train_y=train_y,
                 test_x=test_x, test_y=test_y, num_classes=NUM_CLASSES,
                 level_names=("superclass", "class"))
