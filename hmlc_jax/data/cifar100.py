"""CIFAR-100 through tensorflow-datasets: 20 superclasses -> 100 classes.

The ``cifar100`` builder of tensorflow-datasets gives every image a
``coarse_label`` (superclass, 20) and a ``label`` (class, 100); they become
the label columns ``[superclass, class]``. The whole split is read into host
memory at once (50,000 + 10,000 uint8 images of 32x32x3, 180 MB).

TensorFlow and tensorflow-datasets are imported only when `load` runs, and
TensorFlow is kept off the GPUs so that it leaves accelerator memory to JAX.
"""
from __future__ import annotations

import os
from typing import Tuple

import ml_collections
import numpy as np

from hmlc_jax.data import Dataset, check_labels
from hmlc_jax.errors import UserInputError

NUM_CLASSES = (20, 100)
GET_DATA = ("run `python -c \"import tensorflow_datasets as tfds; tfds.load('cifar100')\"` "
            "on a machine with internet, copy the ~/tensorflow_datasets directory it fills "
            "to this machine and set --config.dataset.data_dir to the copy")


def default_data_dir() -> str:
  """Where tensorflow-datasets looks when no data_dir is given."""
  return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"),
                                                      "tensorflow_datasets"))


def import_tfds():
  """Imports tensorflow-datasets with TensorFlow hidden from every GPU."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:   # devices already initialised by an earlier TF user
    pass
  import tensorflow_datasets as tfds
  return tfds


def first_line(error: BaseException) -> str:
  """``Type: first line of the message`` of an exception, for one-line reports."""
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def read_splits(data_dir: str | None, download: bool) -> list:
  """``tfds.load`` of the train and test splits as NumPy feature dicts.

  Raises:
    UserInputError: the data is not in ``data_dir`` and was not (or could not
      be) downloaded.
  """
  tfds = import_tfds()
  where = data_dir or default_data_dir()
  try:
    splits = tfds.load("cifar100", split=["train", "test"], data_dir=data_dir,
                       batch_size=-1, download=download)
  except AssertionError as e:
    # download=False and no prepared data: tfds asserts "could not find data".
    if "could not find data" not in str(e):
      raise
    raise UserInputError(f"CIFAR-100 (tensorflow-datasets 'cifar100') not found in "
                         f"{where} and dataset.download is False; {GET_DATA}") from None
  except (OSError, tfds.download.DownloadError) as e:
    # Offline: requests' ConnectionError (an OSError) from inside the download.
    raise UserInputError(f"CIFAR-100 not found in {where} and downloading it failed "
                         f"({first_line(e)}); {GET_DATA}") from None
  except ModuleNotFoundError as e:
    if not download:
      raise
    # tensorflow-datasets needs extra modules (e.g. importlib_resources) to download.
    raise UserInputError(f"CIFAR-100 not found in {where} and tensorflow-datasets cannot "
                         f"download it without the Python module {e.name!r} (pip install "
                         f"{e.name}); or {GET_DATA}") from None
  return [tfds.as_numpy(split) for split in splits]


def to_arrays(split: dict, name: str) -> Tuple[np.ndarray, np.ndarray]:
  """(uint8 images ``[N, 32, 32, 3]``, int32 labels ``[N, 2]``) of one split."""
  images = np.asarray(split["image"], dtype=np.uint8)
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
      tensorflow-datasets fetch and prepare the data when it is missing.

  Returns:
    A `Dataset` of kind "image": x uint8 ``[N, 32, 32, 3]``, labels
    ``[superclass, class]`` with ``num_classes=(20, 100)``.
  """
  data_dir = config.get("data_dir", "") or None
  if data_dir:
    data_dir = os.path.expanduser(data_dir)
  train, test = read_splits(data_dir, bool(config.get("download", True)))
  train_x, train_y = to_arrays(train, "train")
  test_x, test_y = to_arrays(test, "test")
  return Dataset(name="cifar100", kind="image", train_x=train_x, train_y=train_y,
                 test_x=test_x, test_y=test_y, num_classes=NUM_CLASSES,
                 level_names=("superclass", "class"))
