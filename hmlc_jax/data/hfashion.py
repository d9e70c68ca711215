"""Hierarchical Fashion-MNIST: 70,000 real 28x28 grey images, three levels.

The hierarchy of Seo & Shin (2019, "Hierarchical convolutional neural networks
for fashion image classification"):

* level 0 (2): clothes | goods;
* level 1 (6): tops, bottoms, dresses, outers (clothes); shoes, accessories (goods);
* level 2 (10): Fashion-MNIST's classes.

The standard IDX files (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``; gzipped or not) are read
from, in this order: ``dataset.data_dir``; ``/usr/share/datasets/fashion-mnist``
(Debian's package ``dataset-fashion-mnist``: ``apt-get install -y dataset-fashion-mnist``);
tensorflow-datasets ``fashion_mnist`` (downloads when online and ``dataset.download``).
``dataset.train_size`` / ``test_size`` > 0 subsample each split, class-balanced and
seeded by ``dataset.seed``.
"""
from __future__ import annotations

import gzip
import os
from typing import Optional, Tuple

import ml_collections
import numpy as np

from hmlc_jax.data import Dataset
from hmlc_jax.errors import UserInputError

# Fashion-MNIST's label ids, in order.
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
LEVEL0 = ("clothes", "goods")
LEVEL1 = ("tops", "bottoms", "dresses", "outers", "shoes", "accessories")
LEVEL1_PARENT = (0, 0, 0, 0, 1, 1)          # LEVEL1[g] lies under LEVEL0[LEVEL1_PARENT[g]]
# Seo & Shin's level-1 group of every class, by class name.
CLASS_GROUP = {"T-shirt/top": "tops", "Pullover": "tops", "Shirt": "tops",
               "Trouser": "bottoms", "Dress": "dresses", "Coat": "outers",
               "Sandal": "shoes", "Sneaker": "shoes", "Ankle boot": "shoes",
               "Bag": "accessories"}
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SIDE = 28


def hierarchy_table() -> np.ndarray:
  """int32 ``[10, 3]``: the (level 0, level 1, level 2) labels of each class id."""
  rows = []
  for klass, name in enumerate(CLASS_NAMES):
    group = LEVEL1.index(CLASS_GROUP[name])
    rows.append((LEVEL1_PARENT[group], group, klass))
  return np.asarray(rows, np.int32)


def read_idx(path: str) -> np.ndarray:
  """An IDX file (gzipped if its name ends in ``.gz``) as a uint8 array.

  Raises:
    UserInputError: the file is not a uint8 IDX file.
  """
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise UserInputError(f"cannot read {path}: {e}") from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise UserInputError(f"{path} is not a uint8 IDX file (bad magic number)")
  ndim = data[3]
  header = 4 + 4 * ndim
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  if len(data) != header + int(np.prod(shape)):
    raise UserInputError(f"{path}: the header says shape {list(shape)} but the file holds "
                         f"{len(data) - header} values; the file is truncated or corrupt")
  return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _find(folder: str, stem: str) -> Optional[str]:
  for name in (stem + ".gz", stem):
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      return path
  return None


def read_folder(folder: str) -> Optional[dict]:
  """``{"train": (images, labels), "test": ...}`` from the IDX files in ``folder``;
  None when the folder holds none of them."""
  paths = {split: tuple(_find(folder, stem) for stem in stems) for split, stems in FILES.items()}
  found = [p for pair in paths.values() for p in pair if p]
  if not found:
    return None
  missing = [stem for split, stems in FILES.items() for stem, p in zip(stems, paths[split])
             if p is None]
  if missing:
    raise UserInputError(f"Fashion-MNIST in {folder} lacks {', '.join(missing)} (.gz or not)")
  splits = {}
  for split, (image_path, label_path) in paths.items():
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE):
      raise UserInputError(f"{image_path} must hold [N, 28, 28] images, got {list(images.shape)}")
    if labels.shape != images.shape[:1]:
      raise UserInputError(f"{label_path} holds {labels.shape[0]} labels for "
                           f"{images.shape[0]} images")
    if labels.size and labels.max() >= len(CLASS_NAMES):
      raise UserInputError(f"{label_path}: labels must lie in [0, 10), found {labels.max()}")
    splits[split] = (images, labels)
  return splits


def _read_tfds(config) -> dict:
  from hmlc_jax.data.tfds_io import data_dir_of, read_splits
  hint = (f"put Fashion-MNIST's four IDX files ({', '.join(FILES['train'] + FILES['test'])}, "
          f".gz or not) in a folder and set --config.dataset.data_dir to it, or on "
          f"Debian/Ubuntu `apt-get install -y dataset-fashion-mnist` (fills {DEBIAN_DIR})")
  train, test = read_splits("fashion_mnist", "Fashion-MNIST", data_dir_of(config),
                            bool(config.download), hint=hint)
  return {name: (np.asarray(s["image"])[..., 0], np.asarray(s["label"]))
          for name, s in (("train", train), ("test", test))}


def read_splits(config: ml_collections.ConfigDict) -> dict:
  """The raw splits from the first place that has them (see the module docstring).

  A ``data_dir`` without IDX files is handed to tensorflow-datasets as its data
  directory.
  """
  data_dir = os.path.expanduser(config.data_dir)
  for folder in (data_dir, DEBIAN_DIR):
    if folder and os.path.isdir(folder):
      splits = read_folder(folder)
      if splits is not None:
        return splits
  return _read_tfds(config)


def balanced_subset(labels: np.ndarray, size: int, rng) -> np.ndarray:
  """Sorted indices of ``size`` examples, as equal a share per class as the data allows."""
  classes = np.unique(labels)
  pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
  take = np.zeros(len(classes), np.int64)
  remaining = size
  while remaining > 0:               # fill evenly, capped by what each class has
    room = np.array([len(p) for p in pools]) - take
    open_ = np.flatnonzero(room > 0)
    share = max(1, remaining // len(open_))
    for c in open_:
      step = min(share, room[c], remaining)
      take[c] += step
      remaining -= step
      if remaining == 0:
        break
  return np.sort(np.concatenate([p[:t] for p, t in zip(pools, take)]))


def _subsample(images, labels, size: int, name: str, rng) -> Tuple[np.ndarray, np.ndarray]:
  if not size or size >= len(labels):
    return images, labels
  if size < len(CLASS_NAMES):
    raise UserInputError(f"dataset.{name}_size must be 0 (all) or at least 10, got {size}")
  index = balanced_subset(labels, size, rng)
  return images[index], labels[index]


def load(config: ml_collections.ConfigDict) -> Dataset:
  """Builds hfashion (fields ``data_dir``, ``download``, ``seed``, ``train_size``,
  ``test_size``)."""
  splits = read_splits(config)
  rng = np.random.default_rng(config.seed)
  table = hierarchy_table()
  arrays = {}
  for split in ("train", "test"):
    images, labels = _subsample(*splits[split], config[f"{split}_size"], split, rng)
    arrays[split] = (np.ascontiguousarray(images)[..., None], table[labels.astype(np.int64)])
  return Dataset(name="hfashion", kind="image",
                 train_x=arrays["train"][0], train_y=arrays["train"][1],
                 test_x=arrays["test"][0], test_y=arrays["test"][1],
                 num_classes=(len(LEVEL0), len(LEVEL1), len(CLASS_NAMES)),
                 level_names=("clothes/goods", "group", "class"),
                 class_names=(LEVEL0, LEVEL1, CLASS_NAMES)).validated()
