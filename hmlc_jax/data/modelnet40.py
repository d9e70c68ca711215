"""ModelNet40 point clouds from the standard HDF5 release, with a coarse level.

The release is ``modelnet40_ply_hdf5_2048.zip`` from the PointNet authors
(Qi et al., 2017). Unzipped, its folder holds ``train_files.txt`` and
``test_files.txt``, each listing ``ply_data_*.h5`` files one per line (as
``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``; only the base name is
used, resolved inside ``dataset.data_dir``). Every file has ``data`` float32
``[N, 2048, 3]`` and ``label`` int ``[N, 1]`` in ``[0, 40)``.

Each cloud keeps its first ``dataset.num_points`` points (the release samples
points in random order, so a prefix is a random subset, as in PointNet), is
centred on its mean and scaled so that its farthest point lies on the unit
sphere. The up axis of the release is y.

Labels are ``[category, class]``: ``class`` is the 40-class id of the
release, ``category`` one of the nine groups of `CATEGORIES`.
"""
from __future__ import annotations

import os
from typing import List, Tuple

import ml_collections
import numpy as np

from hmlc_jax.data import Dataset, check_labels
from hmlc_jax.errors import UserInputError

DEFAULT_DATA_DIR = os.path.join("~", "data", "modelnet40_ply_hdf5_2048")
GET_DATA = ("download modelnet40_ply_hdf5_2048.zip (the PointNet authors' HDF5 release "
            "of ModelNet40), unzip it and set --config.dataset.data_dir to its folder")

CLASS_NAMES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car",
    "chair", "cone", "cup", "curtain", "desk", "door", "dresser", "flower_pot",
    "glass_box", "guitar", "keyboard", "lamp", "laptop", "mantel", "monitor",
    "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase",
    "wardrobe", "xbox")

# Coarse level: nine groups by what an object is for and, roughly, its shape.
# Furniture splits by use (sitting or lying on it, putting things on it,
# keeping things in it); fixed household fittings form one group and parts
# of buildings another; devices with screens, keys or electronics another;
# open or closed receptacles another; vehicles their own. The rest (a person,
# a plant, musical instruments, a traffic cone) share no function, so they
# are grouped as "other". Every class appears exactly once.
CATEGORIES = (
    ("seating", ("bed", "bench", "chair", "sofa", "stool")),
    ("tables", ("desk", "night_stand", "table", "tv_stand")),
    ("storage", ("bookshelf", "dresser", "wardrobe")),
    ("fixtures", ("bathtub", "range_hood", "sink", "toilet")),
    ("structures", ("curtain", "door", "mantel", "stairs", "tent")),
    ("electronics", ("keyboard", "lamp", "laptop", "monitor", "radio", "xbox")),
    ("containers", ("bottle", "bowl", "cup", "flower_pot", "glass_box", "vase")),
    ("vehicles", ("airplane", "car")),
    ("other", ("cone", "guitar", "person", "piano", "plant")),
)
CATEGORY_NAMES = tuple(name for name, _ in CATEGORIES)


def coarse_of_class() -> np.ndarray:
  """int32 ``[40]``: the `CATEGORIES` index of every class id."""
  index = {cls: c for c, (_, members) in enumerate(CATEGORIES) for cls in members}
  return np.array([index[name] for name in CLASS_NAMES], np.int32)


COARSE_OF_CLASS = coarse_of_class()
RADIUS = 1 - 2 ** -20   # largest point norm after `unit_ball`


def unit_ball(points: np.ndarray) -> np.ndarray:
  """Centres every cloud on its mean and scales its farthest point to radius ~1.

  The radius is ``1 - 2**-20`` rather than 1, so that float32 rounding never
  puts a point outside the unit ball.

  Args:
    points: float ``[N, P, 3]``.

  Returns:
    float32 ``[N, P, 3]``; a cloud of identical points becomes all zeros.
  """
  points = np.asarray(points, np.float32)
  centred = points - points.mean(axis=1, keepdims=True)
  radius = np.sqrt(np.einsum("npk,npk->np", centred, centred).max(axis=1))
  scale = np.where(radius > 0, RADIUS / np.maximum(radius, np.finfo(np.float32).tiny), 0)
  return centred * scale[:, None, None].astype(np.float32)


def list_files(data_dir: str, split: str) -> List[str]:
  """Paths of the h5 files that ``{split}_files.txt`` lists, resolved in ``data_dir``."""
  list_path = os.path.join(data_dir, f"{split}_files.txt")
  if not os.path.isfile(list_path):
    raise UserInputError(f"ModelNet40 list file {list_path} not found; {GET_DATA}")
  with open(list_path) as f:
    entries = [line.strip() for line in f if line.strip()]
  if not entries:
    raise UserInputError(f"ModelNet40 list file {list_path} lists no h5 files; {GET_DATA}")
  paths = [os.path.join(data_dir, os.path.basename(entry)) for entry in entries]
  for path in paths:
    if not os.path.isfile(path):
      raise UserInputError(f"ModelNet40 file {path} (listed in {list_path}) not found; "
                           f"{GET_DATA}")
  return paths


def read_file(path: str, num_points: int) -> Tuple[np.ndarray, np.ndarray]:
  """Reads one h5 file: (float ``[N, num_points, 3]``, int64 class ids ``[N]``)."""
  try:
    import h5py   # only needed for ModelNet40
  except ImportError:
    raise UserInputError("reading ModelNet40 needs the h5py package; pip install h5py") from None
  try:
    with h5py.File(path, "r") as f:
      if "data" not in f or "label" not in f:
        raise UserInputError(f"ModelNet40 file {path} must hold datasets 'data' and "
                             f"'label', found {sorted(f.keys())}; {GET_DATA}")
      data, label = f["data"], f["label"]
      if data.ndim != 3 or data.shape[2] != 3:
        raise UserInputError(f"ModelNet40 file {path}: 'data' must have shape [N, P, 3], "
                             f"got {list(data.shape)}; {GET_DATA}")
      if num_points > data.shape[1]:
        raise UserInputError(f"dataset.num_points={num_points} exceeds the "
                             f"{data.shape[1]} points per cloud in {path}")
      points, labels = data[:, :num_points, :], np.asarray(label[()])
  except OSError as e:
    raise UserInputError(f"cannot read ModelNet40 file {path} as HDF5 "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                         f"{GET_DATA}") from None
  return points, check_file_labels(labels, len(points), path)


def check_file_labels(labels: np.ndarray, num_clouds: int, path: str) -> np.ndarray:
  """Flattens one file's ``label`` to ``[N]`` and checks its length and range."""
  if labels.shape not in ((num_clouds,), (num_clouds, 1)):
    raise UserInputError(f"ModelNet40 file {path}: 'label' has shape {list(labels.shape)} "
                         f"but 'data' holds {num_clouds} clouds; {GET_DATA}")
  labels = labels.reshape(-1)
  if not np.issubdtype(labels.dtype, np.number) or np.any(labels != np.round(labels)):
    raise UserInputError(f"ModelNet40 file {path}: 'label' must hold integer class ids, "
                         f"got dtype {labels.dtype}; {GET_DATA}")
  labels = labels.astype(np.int64)
  if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
    raise UserInputError(f"ModelNet40 file {path}: 'label' must lie in [0, 40), found "
                         f"{labels.min()}..{labels.max()}; {GET_DATA}")
  return labels


def check_shape_names(data_dir: str) -> None:
  """If the release's ``shape_names.txt`` is there, it must list `CLASS_NAMES` in order."""
  path = os.path.join(data_dir, "shape_names.txt")
  if not os.path.isfile(path):
    return
  with open(path) as f:
    names = tuple(line.strip() for line in f if line.strip())
  if names != CLASS_NAMES:
    raise UserInputError(f"{path} does not list the 40 ModelNet40 classes in the standard "
                         f"order (is this ModelNet40?); {GET_DATA}")


def read_split(data_dir: str, split: str, num_points: int) -> Tuple[np.ndarray, np.ndarray]:
  """One split: float32 points ``[N, num_points, 3]`` in the unit ball, labels ``[N, 2]``."""
  parts = [read_file(path, num_points) for path in list_files(data_dir, split)]
  points = unit_ball(np.concatenate([p for p, _ in parts]))
  fine = np.concatenate([y for _, y in parts])
  labels = np.stack([COARSE_OF_CLASS[fine], fine], axis=1)
  return points, check_labels(labels, (len(CATEGORIES), len(CLASS_NAMES)), split)


def load(config: ml_collections.ConfigDict) -> Dataset:
  """Loads ModelNet40 from ``config.data_dir`` (fields ``data_dir``, ``num_points``).

  Args:
    config: the ``dataset`` config section. ``data_dir`` "" means
      `DEFAULT_DATA_DIR`; ``num_points`` (default 1024) points are kept per cloud.

  Returns:
    A `Dataset` of kind "points": x float32 ``[N, num_points, 3]``, labels
    ``[category, class]`` with ``num_classes=(9, 40)``.
  """
  data_dir = os.path.expanduser(config.data_dir or DEFAULT_DATA_DIR)
  num_points = config.num_points
  if not isinstance(num_points, (int, np.integer)) or num_points < 1:
    raise UserInputError(f"dataset.num_points must be a positive integer, got {num_points!r}")
  if not os.path.isdir(data_dir):
    raise UserInputError(f"ModelNet40 folder {data_dir} (dataset.data_dir) not found; "
                         f"{GET_DATA}")
  check_shape_names(data_dir)
  train_x, train_y = read_split(data_dir, "train", num_points)
  test_x, test_y = read_split(data_dir, "test", num_points)
  return Dataset(name="modelnet40", kind="points", train_x=train_x, train_y=train_y,
                 test_x=test_x, test_y=test_y,
                 num_classes=(len(CATEGORIES), len(CLASS_NAMES)),
                 level_names=("category", "class"))
