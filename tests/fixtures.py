"""Test data written by tests: mock CIFAR-100 for tensorflow-datasets and a tiny
ModelNet40 HDF5 release in the standard layout."""
from __future__ import annotations

import os

import ml_collections
import numpy as np

from configs import common
from hmlc_jax.data import modelnet40

CIFAR_SIZES = {"train": 30, "test": 10}


def section(_section: str, **fields) -> ml_collections.ConfigDict:
  """``base_config``'s ``_section`` (dataset, model, augment) with ``fields`` set
  (of any type: tests hand the loaders wrong ones)."""
  return ml_collections.ConfigDict({**common.base_config("supcon")[_section].to_dict(), **fields})


def coarse_of(fine: np.ndarray) -> np.ndarray:
  """A fixed, tree-consistent superclass of every class for the mock data."""
  return (fine * 7) % 20


def write_cifar_metadata(root):
  return write_tfds_metadata(root, "cifar100", CIFAR_SIZES)


def write_tfds_metadata(root, name: str, sizes: dict):
  """tfds metadata with split sizes, so that ``batch_size=-1`` works on mock data.

  Without it tfds batches mock data by ``sys.maxsize`` and TensorFlow aborts.
  """
  import tensorflow_datasets as tfds   # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=str(root))
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=split, shard_lengths=[size], num_bytes=0)
      for split, size in sizes.items()]))
  os.makedirs(builder.data_dir)
  builder.info.write_to_directory(builder.data_dir)
  return str(root)


def mock_as_dataset(self, split, *args, misplaced_class=None, **kwargs):
  """Mock ``_as_dataset``: random images, labels with ``coarse = coarse_of(fine)``.

  With ``misplaced_class``, the train split also puts that class under a
  second superclass, so that the labels are not a tree.
  """
  import tensorflow as tf   # pylint: disable=g-import-not-at-top
  del self, args, kwargs
  n = CIFAR_SIZES[str(split)]
  rng = np.random.default_rng(list(CIFAR_SIZES).index(str(split)))
  fine = rng.integers(0, 100, size=n)
  coarse = coarse_of(fine)
  if misplaced_class is not None and str(split) == "train":
    fine[:2] = misplaced_class
    coarse[:2] = coarse_of(np.array([misplaced_class, misplaced_class + 1]))
  return tf.data.Dataset.from_tensor_slices({
      "id": np.array([f"{split}_{i}".encode() for i in range(n)]),
      "image": rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8),
      "label": fine, "coarse_label": coarse})


MNIST_SIZES = {"train": 40, "test": 20}


def mock_mnist(self, split, *args, **kwargs):
  """Mock ``_as_dataset`` of MNIST: random 28x28 images, every digit present."""
  import tensorflow as tf   # pylint: disable=g-import-not-at-top
  del self, args, kwargs
  n = MNIST_SIZES[str(split)]
  rng = np.random.default_rng(10 + list(MNIST_SIZES).index(str(split)))
  return tf.data.Dataset.from_tensor_slices({
      "image": rng.integers(0, 256, size=(n, 28, 28, 1), dtype=np.uint8),
      "label": np.arange(n) % 10})


def write_h5(path, data, label) -> None:
  import h5py   # pylint: disable=g-import-not-at-top
  with h5py.File(path, "w") as f:
    f.create_dataset("data", data=data)
    f.create_dataset("label", data=label)


def write_modelnet(root, points_per_cloud: int = 16, seed: int = 0) -> dict:
  """A tiny release: two train files and one test file, standard list files.

  Returns:
    {split: (raw float32 points [N, points_per_cloud, 3], class ids [N])}.
  """
  rng = np.random.default_rng(seed)
  files = {"train": ["ply_data_train0.h5", "ply_data_train1.h5"], "test": ["ply_data_test0.h5"]}
  sizes = {"ply_data_train0.h5": 5, "ply_data_train1.h5": 3, "ply_data_test0.h5": 4}
  raw = {}
  for split, names in files.items():
    xs, ys = [], []
    for name in names:
      x = (rng.normal(size=(sizes[name], points_per_cloud, 3)) * rng.uniform(0.1, 5)
           + rng.normal(size=(sizes[name], 1, 3)) * 3).astype(np.float32)
      y = rng.integers(0, 40, size=(sizes[name], 1)).astype(np.uint8)
      write_h5(os.path.join(root, name), x, y)
      xs.append(x)
      ys.append(y[:, 0])
    with open(os.path.join(root, f"{split}_files.txt"), "w") as f:
      f.writelines(f"data/modelnet40_ply_hdf5_2048/{name}\n" for name in names)
    raw[split] = (np.concatenate(xs), np.concatenate(ys).astype(np.int64))
  with open(os.path.join(root, "shape_names.txt"), "w") as f:
    f.write("\n".join(modelnet40.CLASS_NAMES) + "\n")
  return raw




def write_idx(path, array: np.ndarray) -> None:
  """A uint8 IDX file (gzipped when ``path`` ends in ``.gz``)."""
  import gzip   # pylint: disable=g-import-not-at-top
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      int(n).to_bytes(4, "big") for n in array.shape)
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(header + array.tobytes())


def fashion_like(rng, labels: np.ndarray) -> np.ndarray:
  """uint8 ``[N, 28, 28]`` learnable images whose look follows hfashion's tree:
  clothes are bars and goods box outlines (level 0), the level-1 group sets the
  size, the class within its group the orientation; shifted by up to 4 pixels,
  on noise."""
  from hmlc_jax.data import hfashion   # pylint: disable=g-import-not-at-top
  table = hfashion.hierarchy_table()
  yy, xx = np.mgrid[0:28, 0:28] - 13.5
  shapes = []
  for klass in range(10):
    level0, group, _ = table[klass]
    siblings = np.flatnonzero(table[:, 1] == group)
    angle = np.pi * (0.1 + np.searchsorted(siblings, klass) / (len(siblings) + 1))
    along = np.cos(angle) * xx + np.sin(angle) * yy
    across = -np.sin(angle) * xx + np.cos(angle) * yy
    size = 5.0 + 1.5 * group
    if level0 == 0:
      shape = (np.abs(across) < 1.5) & (np.abs(along) < size)
    else:
      edge = np.maximum(np.abs(along), np.abs(across) * 1.6)
      shape = (edge < size) & (edge > size - 2.5)
    shapes.append(shape.astype(np.float64))
  shapes = np.stack(shapes)
  shift = rng.integers(-4, 5, size=(len(labels), 2))
  images = np.stack([np.roll(shapes[k], tuple(s), axis=(0, 1)) for k, s in zip(labels, shift)])
  images = 0.2 + 0.6 * images + rng.normal(0.0, 0.15, size=images.shape)
  return np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)


def write_fashion_idx(root, sizes=(600, 300), seed=0, gz=True) -> str:
  """Fashion-MNIST's four IDX files with `fashion_like` images; returns ``root``."""
  rng = np.random.default_rng(seed)
  suffix = ".gz" if gz else ""
  os.makedirs(root, exist_ok=True)
  for prefix, size in zip(("train", "t10k"), sizes):
    labels = np.arange(size) % 10
    rng.shuffle(labels)
    write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte{suffix}"), fashion_like(rng, labels))
    write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte{suffix}"), labels)
  return str(root)
