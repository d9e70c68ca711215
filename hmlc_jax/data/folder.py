"""Your own labelled tree of images, read from folders (``dataset.name="folder"``).

Three layouts, chosen by ``dataset.layout``:

* ``"tree"`` (default): the folder nesting is the label tree,
  ``PATH/<split>/<level 0>/<level 1>/.../<leaf>/<image files>``. Every image
  lies at the same depth; the names of the folders on its way are its label
  path, coarsest first.
* ``"taxonomy_names"``: one folder per leaf class whose name carries the
  whole path, ``<id>_<level 0>_<level 1>_..._<leaf>``: iNaturalist 2021's
  ``train_mini/00000_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris/``
  (seven levels after the numeric id: kingdom to genus, then the species
  epithet). ``dataset.taxonomy_levels`` (7) says how many names follow the
  id; a species epithet with underscores of its own keeps them (the remaining
  parts form the leaf name).
* ``"csv"``: ``PATH/<split>.csv`` with a header and rows
  ``file,level0,...,levelH-1``; ``file`` relative to ``PATH``.

Splits: the folders (or CSV files) named ``dataset.train_split`` and
``dataset.test_split`` (default ``train`` / ``test``); without a test split,
``dataset.test_fraction`` of the training images is held out (stratified by
leaf, seeded by ``dataset.seed``). Hidden files and files that are not images
(by extension) are ignored. Images are decoded by `images.decode`, resized to
``dataset.image_size`` square and converted to ``dataset.channels`` (1: grey,
3: RGB), uint8. Classes are numbered per level in the sorted order of their
names, kept as path prefixes (``clothes``, ``clothes/tops``, ...) in the
`Dataset`'s ``class_names`` and ``data_spec.json``. The images are decoded
into host memory at load, or, with ``dataset.stream``, when a batch needs them
(`pipeline.LazyImages`: only file names and labels are held).
"""
from __future__ import annotations

import csv
import os
from typing import Dict, List, Sequence, Tuple

import ml_collections
import numpy as np

from hmlc_jax.data import Dataset
from hmlc_jax.data.images import decode, is_image
from hmlc_jax.data.pipeline import LazyImages
from hmlc_jax.errors import UserInputError

LAYOUTS = ("tree", "taxonomy_names", "csv")


def load(config: ml_collections.ConfigDict) -> Dataset:
  root = config.get("path", "")
  layout = config.get("layout", "tree")
  if not root:
    raise UserInputError("dataset.name=folder needs dataset.path, the folder that holds "
                         "the splits (e.g. --config.dataset.path=/data/my_tree)")
  if not os.path.isdir(root):
    raise UserInputError(f"dataset.path {root} is not a folder")
  if layout not in LAYOUTS:
    raise UserInputError(f"dataset.layout must be one of {', '.join(LAYOUTS)}; "
                         f"got {layout!r}")
  size, channels = config.get("image_size", 32), config.get("channels", 3)
  if not isinstance(size, int) or size < 1 or channels not in (1, 3):
    raise UserInputError(f"dataset.image_size must be a positive int and dataset.channels "
                         f"1 or 3; got {size!r} and {channels!r}")
  train_split, test_split = config.get("train_split", "train"), config.get("test_split", "test")
  read = {"tree": _read_tree, "taxonomy_names": _read_taxonomy, "csv": _read_csv}[layout]
  train_files, train_paths = read(root, train_split, config)
  if not train_files:
    raise UserInputError(f"no images in the {train_split} split under {root}")
  if _split_exists(root, test_split, layout):
    test_files, test_paths = read(root, test_split, config)
  else:
    train_files, train_paths, test_files, test_paths = _hold_out(
        train_files, train_paths, config.get("test_fraction", 0.3), config.seed)
  depth = {len(p) for p in train_paths + test_paths}
  if len(depth) != 1:
    raise UserInputError(f"the splits of {root} have label paths of {sorted(depth)} levels")
  stream = config.get("stream", False)
  if not stream:
    _check_memory(len(train_files) + len(test_files), size, channels, root)
  images = ((lambda files: LazyImages(files, size, channels, decode)) if stream
            else (lambda files: decode(files, size, channels)))
  names = _class_names(train_paths + test_paths)
  encode = lambda paths: np.asarray([[names[h].index(part) for h, part in enumerate(p)]
                                     for p in paths], np.int32)
  level_names = tuple(f"level {h}" for h in range(len(names)))
  return Dataset(name="folder", kind="image",
                 train_x=images(train_files), train_y=encode(train_paths),
                 test_x=images(test_files), test_y=encode(test_paths),
                 num_classes=tuple(len(n) for n in names), level_names=level_names,
                 class_names=tuple(tuple(n) for n in names)).validated()


# ----------------------------------------------------------------------------
# Layouts: (image files, label paths) of one split


def _visible(names: Sequence[str]) -> List[str]:
  return sorted(n for n in names if not n.startswith("."))


def _read_tree(root: str, split: str, config) -> Tuple[List[str], List[Tuple[str, ...]]]:
  base = os.path.join(root, split)
  files, paths = [], []
  leaf_depth = None
  for folder, subfolders, names in os.walk(base):
    subfolders[:] = _visible(subfolders)
    images = [n for n in sorted(names) if is_image(n)]
    relative = os.path.relpath(folder, base)
    parts = () if relative == "." else tuple(relative.split(os.sep))
    if images:
      if not parts:
        raise UserInputError(f"{base} holds images directly; put them in class folders")
      if leaf_depth is None:
        leaf_depth = (len(parts), folder)
      elif len(parts) != leaf_depth[0]:
        raise UserInputError(
            f"not a tree: {folder} holds images at depth {len(parts)}, {leaf_depth[1]} at "
            f"depth {leaf_depth[0]}; every class folder must sit at the same depth")
      files += [os.path.join(folder, n) for n in images]
      paths += [_prefixes(parts)] * len(images)
    elif not subfolders and parts:
      raise UserInputError(f"empty class folder {folder}: it holds no image")
  return files, paths


def _read_taxonomy(root: str, split: str, config) -> Tuple[List[str], List[Tuple[str, ...]]]:
  base = os.path.join(root, split)
  levels = config.get("taxonomy_levels", 7)
  files, paths = [], []
  for folder in _visible(os.listdir(base)):
    full = os.path.join(base, folder)
    if not os.path.isdir(full):
      continue
    parts = folder.split("_")
    if len(parts) < levels + 1 or not parts[0].isdigit():
      raise UserInputError(
          f"{full}: a taxonomy_names folder is <id>_<{levels} names>, e.g. "
          f"00000_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris; "
          f"this one has {len(parts) - 1} names after {parts[0]!r} "
          f"(dataset.taxonomy_levels={levels})")
    path = _prefixes(tuple(parts[1:levels]) + ("_".join(parts[levels:]),))
    images = [n for n in sorted(os.listdir(full)) if is_image(n)]
    if not images:
      raise UserInputError(f"empty class folder {full}: it holds no image")
    files += [os.path.join(full, n) for n in images]
    paths += [path] * len(images)
  return files, paths


def _read_csv(root: str, split: str, config) -> Tuple[List[str], List[Tuple[str, ...]]]:
  table = os.path.join(root, f"{split}.csv")
  files, paths = [], []
  with open(table, newline="") as f:
    rows = list(csv.reader(f))
  if not rows:
    raise UserInputError(f"{table} is empty; it needs a header file,level0,...")
  width = len(rows[0])
  for number, row in enumerate(rows[1:], start=2):
    if len(row) != width or width < 2:
      raise UserInputError(f"{table} line {number}: {len(row)} fields, the header has {width}")
    file = os.path.join(root, row[0])
    if not os.path.isfile(file):
      raise UserInputError(f"{table} line {number}: no such file {file}")
    files.append(file)
    paths.append(_prefixes(tuple(row[1:])))
  return files, paths


def _split_exists(root: str, split: str, layout: str) -> bool:
  if layout == "csv":
    return os.path.isfile(os.path.join(root, f"{split}.csv"))
  return os.path.isdir(os.path.join(root, split))


# ----------------------------------------------------------------------------
# Labels and pixels


def _prefixes(parts: Tuple[str, ...]) -> Tuple[str, ...]:
  """A label path as its prefixes, ``("a", "b") -> ("a", "a/b")``: equal names
  under different parents stay different classes."""
  return tuple("/".join(parts[:h + 1]) for h in range(len(parts)))


def _class_names(paths: Sequence[Tuple[str, ...]]) -> List[List[str]]:
  """Sorted distinct class names (path prefixes) per level."""
  return [sorted({p[h] for p in paths}) for h in range(len(paths[0]))]


def _hold_out(files, paths, fraction, seed):
  if not 0.0 < fraction < 1.0:
    raise UserInputError(f"dataset.test_fraction must lie in (0, 1) when there is no test "
                         f"split; got {fraction!r}")
  rng = np.random.default_rng(seed)
  by_leaf: Dict[Tuple[str, ...], List[int]] = {}
  for i, p in enumerate(paths):
    by_leaf.setdefault(p, []).append(i)
  test = set()
  for leaf in sorted(by_leaf):
    rows = rng.permutation(by_leaf[leaf])
    test.update(rows[:int(round(fraction * len(rows)))].tolist())
  pick = lambda keep: ([files[i] for i in range(len(files)) if (i in test) == keep],
                       [paths[i] for i in range(len(paths)) if (i in test) == keep])
  return (*pick(False), *pick(True))


def _check_memory(count: int, size: int, channels: int, root: str) -> None:
  """UserInputError, before decoding, when the pixels would not fit in host memory."""
  need = count * size * size * channels
  try:
    have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    return
  if need > 0.8 * have:
    raise UserInputError(f"{count} images of {size}x{size}x{channels} under {root} need "
                         f"{need / 2**30:.1f} GiB in memory, more than this host's "
                         f"{have / 2**30:.1f} GiB allows; use a smaller dataset.image_size "
                         f"or a larger host")
