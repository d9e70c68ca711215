"""Tests of the cifar100, modelnet40 and shapes3d loaders (hmlc_jax.data).

TensorFlow is imported only inside the CIFAR-100 tests. CIFAR-100 runs
through the real `load` on tensorflow-datasets' mock data; ModelNet40 on a
tiny release written by the test in the standard layout.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import h5py
import ml_collections
import numpy as np
import pytest

from hmlc_jax import hierarchy
from hmlc_jax.data import cifar100, load_dataset, modelnet40, shapes3d
from hmlc_jax.data import tfds_io
from hmlc_jax.errors import UserInputError
from tests.fixtures import (section, coarse_of, mock_as_dataset, write_cifar_metadata, write_h5,
                            write_modelnet)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dataset_config(**fields) -> ml_collections.ConfigDict:
  return section("dataset", **fields)


def assert_one_line_error(excinfo, *fragments: str) -> None:
  message = str(excinfo.value)
  assert "\n" not in message and message.strip() == message
  for fragment in fragments:
    assert fragment in message, (fragment, message)


def assert_tree_labels(labels: np.ndarray, num_classes) -> None:
  assert labels.dtype == np.int32 and labels.shape[1] == len(num_classes)
  for level, n in enumerate(num_classes):
    assert 0 <= labels[:, level].min() and labels[:, level].max() < n
  hierarchy.validate_tree(labels)


# --- CIFAR-100 ---

@pytest.fixture
def tfds_module():
  import tensorflow_datasets          # a requirement: imported when a test needs it
  return tensorflow_datasets


@pytest.fixture
def cifar_metadata(tmp_path, tfds_module):
  return write_cifar_metadata(tmp_path / "meta")


def test_cifar100_import_does_not_load_tensorflow():
  code = "import sys, hmlc_jax.data.cifar100; assert 'tensorflow' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                 env=dict(os.environ, PYTHONPATH=REPO))


def test_cifar100_loads_tree_consistent_mock(tfds_module, cifar_metadata):
  with tfds_module.testing.mock_data(data_dir=cifar_metadata,
                                     as_dataset_fn=mock_as_dataset):
    ds = load_dataset(dataset_config(name="cifar100", download=False))
  assert (ds.name, ds.kind) == ("cifar100", "image")
  assert ds.num_classes == (20, 100) and ds.level_names == ("superclass", "class")
  for x, y, n in ((ds.train_x, ds.train_y, 30), (ds.test_x, ds.test_y, 10)):
    assert x.shape == (n, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (n, 2)
    assert_tree_labels(y, ds.num_classes)
    np.testing.assert_array_equal(y[:, 0], coarse_of(y[:, 1]))
  import tensorflow as tf   # pylint: disable=g-import-not-at-top
  assert tf.config.get_visible_devices("GPU") == []


class ListSource(list):
  """A random-access source as `tfds.data_source` returns one, from a list of records."""

  def __getitems__(self, indices):
    return [self[i] for i in indices]


def test_cifar100_streamed_from_a_data_source_equals_the_in_memory_load(tfds_module,
                                                                         cifar_metadata):
  """dataset.stream=True reads CIFAR-100 through `tfds.data_source`: under the
  mock (the same records as `tfds.load` serves) the labels are read at load, the
  images only when indexed, and both equal the in-memory loader's."""
  from hmlc_jax.data.pipeline import LazyImages

  def as_data_source(self, split, *args, **kwargs):
    records = lambda s: ListSource(tfds_module.as_numpy(mock_as_dataset(self, s)))
    return [records(s) for s in split]

  with tfds_module.testing.mock_data(data_dir=cifar_metadata, as_dataset_fn=mock_as_dataset):
    memory = load_dataset(dataset_config(name="cifar100", download=False))
  with tfds_module.testing.mock_data(as_data_source_fn=as_data_source):
    streamed = load_dataset(dataset_config(name="cifar100", download=False, stream=True))
  assert isinstance(streamed.train_x, LazyImages) and streamed.train_x.shape == (30, 32, 32, 3)
  np.testing.assert_array_equal(streamed.train_y, memory.train_y)
  np.testing.assert_array_equal(streamed.test_y, memory.test_y)
  np.testing.assert_array_equal(streamed.train_x[np.array([4, 0, 29])], memory.train_x[[4, 0, 29]])
  np.testing.assert_array_equal(streamed.test_x[3:8], memory.test_x[3:8])


def test_stream_splits_reads_array_record_and_refuses_tfrecord(tmp_path, tfds_module):
  """A data set really prepared as ArrayRecord (tfds' DummyMnist) streams record
  for record; one prepared as TFRecord (no random access) is refused in one
  line saying how to prepare it."""
  records = tmp_path / "array_record"
  tfds_module.testing.DummyMnist(data_dir=str(records),
                                 file_format="array_record").download_and_prepare()
  train, test = tfds_io.stream_splits("dummy_mnist", "dummy", str(records), download=False)
  source = tfds_module.data_source("dummy_mnist", split="train", data_dir=str(records))
  assert train["image"].shape == (len(source), 28, 28, 1) and len(test["label"]) > 0
  np.testing.assert_array_equal(train["label"], [source[i]["label"] for i in range(len(source))])
  np.testing.assert_array_equal(train["image"][np.array([5, 1])],
                                np.stack([source[5]["image"], source[1]["image"]]))
  plain = tmp_path / "tfrecord"
  tfds_module.testing.DummyMnist(data_dir=str(plain)).download_and_prepare()
  with pytest.raises(UserInputError) as excinfo:
    tfds_io.stream_splits("dummy_mnist", "dummy", str(plain), download=False)
  assert_one_line_error(excinfo, "cannot be streamed", "file_format='array_record'")


def test_cifar100_rejects_labels_that_are_not_a_tree(tfds_module, cifar_metadata):
  def as_dataset(self, split, *args, **kwargs):   # a method, unlike a functools.partial
    return mock_as_dataset(self, split, *args, misplaced_class=57, **kwargs)
  with tfds_module.testing.mock_data(data_dir=cifar_metadata, as_dataset_fn=as_dataset):
    with pytest.raises(UserInputError) as excinfo:
      cifar100.load(dataset_config(name="cifar100", download=False))
  assert_one_line_error(excinfo, "train labels", "not a tree", "class 57")


def test_cifar100_missing_data_without_download(tmp_path, tfds_module):
  config = dataset_config(name="cifar100", data_dir=str(tmp_path), download=False)
  with pytest.raises(UserInputError) as excinfo:
    cifar100.load(config)
  assert_one_line_error(excinfo, str(tmp_path), "tfds.load('cifar100')",
                        "--config.dataset.data_dir")


@pytest.mark.parametrize("kind", ["connection", "download", "module"])
def test_cifar100_failed_download(tmp_path, tfds_module, monkeypatch, kind):
  import requests   # pylint: disable=g-import-not-at-top
  errors = {"connection": requests.exceptions.ConnectionError("Failed to resolve host\nmore"),
            "download": tfds_module.download.DownloadError("HTTP 404"),
            "module": ModuleNotFoundError("no module", name="importlib_resources")}

  def fail(*args, **kwargs):
    raise errors[kind]
  monkeypatch.setattr(tfds_module.core.DatasetBuilder, "download_and_prepare", fail)
  monkeypatch.setattr(tfds_io, "can_reach_downloads", lambda: True)   # failures come later
  config = dataset_config(name="cifar100", data_dir=str(tmp_path), download=True)
  with pytest.raises(UserInputError) as excinfo:
    cifar100.load(config)
  assert_one_line_error(excinfo, str(tmp_path), "tfds.load('cifar100')")
  if kind == "module":
    assert "pip install importlib_resources" in str(excinfo.value)


# --- ModelNet40 ---

def expected_points(raw: np.ndarray, num_points: int) -> np.ndarray:
  kept = raw[:, :num_points].astype(np.float64)
  centred = kept - kept.mean(axis=1, keepdims=True)
  return centred / np.linalg.norm(centred, axis=-1).max(axis=1)[:, None, None]


def test_modelnet40_grouping_covers_every_class_once():
  members = [cls for _, classes in modelnet40.CATEGORIES for cls in classes]
  assert sorted(members) == sorted(modelnet40.CLASS_NAMES) and len(members) == 40
  assert 6 <= len(modelnet40.CATEGORIES) <= 10
  assert modelnet40.CATEGORY_NAMES[modelnet40.COARSE_OF_CLASS[8]] == "seating"   # chair


def test_modelnet40_loads_standard_layout(tmp_path):
  raw = write_modelnet(tmp_path)
  ds = load_dataset(dataset_config(name="modelnet40", data_dir=str(tmp_path), num_points=10))
  assert (ds.name, ds.kind) == ("modelnet40", "points")
  assert ds.num_classes == (9, 40) and ds.level_names == ("category", "class")
  coarse_by_name = {cls: c for c, (_, classes) in enumerate(modelnet40.CATEGORIES)
                    for cls in classes}
  for x, y, split in ((ds.train_x, ds.train_y, "train"), (ds.test_x, ds.test_y, "test")):
    points, fine = raw[split]
    assert x.dtype == np.float32 and x.shape == (len(fine), 10, 3)
    np.testing.assert_allclose(x, expected_points(points, 10), atol=1e-5)
    assert np.linalg.norm(x, axis=-1).max() <= 1.0
    np.testing.assert_allclose(np.linalg.norm(x, axis=-1).max(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(y[:, 1], fine)
    np.testing.assert_array_equal(
        y[:, 0], [coarse_by_name[modelnet40.CLASS_NAMES[i]] for i in fine])
    assert_tree_labels(y, ds.num_classes)


def test_modelnet40_default_num_points(tmp_path):
  raw = write_modelnet(tmp_path, points_per_cloud=1100)
  ds = modelnet40.load(dataset_config(data_dir=str(tmp_path)))
  assert ds.train_x.shape == (8, 1024, 3)
  np.testing.assert_allclose(ds.test_x, expected_points(raw["test"][0], 1024), atol=1e-5)


def corrupt_labels(root, value):
  write_h5(os.path.join(root, "ply_data_train1.h5"), np.zeros((3, 16, 3), np.float32),
           np.full((3, 1), value))


MODELNET_ERRORS = {
    "missing_dir": (lambda root: None, "nowhere", "dataset.data_dir"),
    "missing_list": (lambda root: os.remove(os.path.join(root, "test_files.txt")),
                     "test_files.txt", "modelnet40_ply_hdf5_2048.zip"),
    "missing_h5": (lambda root: os.remove(os.path.join(root, "ply_data_train1.h5")),
                   "ply_data_train1.h5", "train_files.txt"),
    "label_range": (lambda root: corrupt_labels(root, 40), "ply_data_train1.h5", "[0, 40)"),
    "negative_label": (lambda root: corrupt_labels(root, -1), "ply_data_train1.h5", "[0, 40)"),
    "length_mismatch": (
        lambda root: write_h5(os.path.join(root, "ply_data_test0.h5"),
                              np.zeros((4, 16, 3), np.float32), np.zeros((3, 1), np.uint8)),
        "ply_data_test0.h5", "4 clouds"),
    "no_label": (lambda root: h5py.File(os.path.join(root, "ply_data_test0.h5"), "w").close(),
                 "ply_data_test0.h5", "'label'"),
    "not_hdf5": (lambda root: pathlib.Path(root, "ply_data_test0.h5").write_bytes(b"x"),
                 "ply_data_test0.h5", "HDF5"),
    "shape_names": (
        lambda root: pathlib.Path(root, "shape_names.txt").write_text("chair\ntable\n"),
        "shape_names.txt", "ModelNet40"),
}


@pytest.mark.parametrize("case", sorted(MODELNET_ERRORS))
def test_modelnet40_errors(tmp_path, case):
  write_modelnet(tmp_path)
  damage, *fragments = MODELNET_ERRORS[case]
  damage(str(tmp_path))
  data_dir = str(tmp_path / "nowhere") if case == "missing_dir" else str(tmp_path)
  with pytest.raises(UserInputError) as excinfo:
    modelnet40.load(dataset_config(name="modelnet40", data_dir=data_dir, num_points=8))
  assert_one_line_error(excinfo, *fragments)


@pytest.mark.parametrize("num_points", [0, 17])
def test_modelnet40_bad_num_points(tmp_path, num_points):
  write_modelnet(tmp_path)
  config = dataset_config(name="modelnet40", data_dir=str(tmp_path), num_points=num_points)
  with pytest.raises(UserInputError) as excinfo:
    modelnet40.load(config)
  assert_one_line_error(excinfo, "dataset.num_points")


# --- shapes3d ---

def small_shapes(seed=0, **fields):
  fields = dict(dict(num_points=128, train_size=64, test_size=48), **fields)
  return shapes3d.load(dataset_config(name="shapes3d", seed=seed, **fields))


def test_shapes3d_arrays_and_labels():
  ds = load_dataset(dataset_config(name="shapes3d", num_points=128, train_size=64,
                                   test_size=48))
  assert (ds.name, ds.kind) == ("shapes3d", "points")
  assert ds.num_classes == (4, 16) and ds.level_names == ("family", "shape")
  for x, y, n in ((ds.train_x, ds.train_y, 64), (ds.test_x, ds.test_y, 48)):
    assert x.shape == (n, 128, 3) and x.dtype == np.float32
    assert np.all(np.isfinite(x))
    radius = np.linalg.norm(x, axis=-1)
    assert radius.max() <= 1.0
    np.testing.assert_allclose(radius.max(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(x.mean(axis=1), 0.0, atol=1e-5)
    assert_tree_labels(y, ds.num_classes)
    np.testing.assert_array_equal(y[:, 0], y[:, 1] // 4)
    np.testing.assert_array_equal(np.bincount(y[:, 1], minlength=16), np.full(16, n // 16))


def test_shapes3d_balanced_when_size_does_not_divide():
  ds = small_shapes(train_size=70, test_size=17)
  for y in (ds.train_y, ds.test_y):
    counts = np.bincount(y[:, 1], minlength=16)
    assert counts.max() - counts.min() <= 1 and counts.sum() == len(y)


def test_shapes3d_deterministic_in_seed():
  a, b, c = small_shapes(seed=3), small_shapes(seed=3), small_shapes(seed=4)
  for field in ("train_x", "train_y", "test_x", "test_y"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  assert not np.array_equal(a.train_x, c.train_x)
  assert not np.array_equal(a.train_x[:48], a.test_x)
  assert not np.any(np.all(np.isclose(a.train_x[:, None], a.test_x[None]), axis=(2, 3)))


def test_shapes3d_defaults_and_speed():
  start = time.perf_counter()
  ds = shapes3d.load(dataset_config(name="shapes3d"))
  elapsed = time.perf_counter() - start
  assert ds.train_x.shape == (4000, 1024, 3) and ds.test_x.shape == (1000, 1024, 3)
  assert elapsed < 15.0, elapsed   # about 2 s on two CPU cores


@pytest.mark.parametrize("field,value", [("train_size", 8), ("test_size", -1),
                                         ("num_points", 0), ("seed", -1)])
def test_shapes3d_bad_fields(field, value):
  with pytest.raises(UserInputError) as excinfo:
    small_shapes(**{field: value})
  assert_one_line_error(excinfo, f"dataset.{field}")


def radial_histograms(x: np.ndarray, bins: int = 16) -> np.ndarray:
  """Rotation-invariant features: histogram of the points' distances to the centre."""
  radius = np.linalg.norm(x, axis=-1)
  edges = np.linspace(0, 1, bins + 1)[1:-1]
  counts = np.stack([np.bincount(np.searchsorted(edges, r), minlength=bins) for r in radius])
  return counts / x.shape[1]


def test_shapes3d_learnable_but_not_trivial():
  from sklearn.ensemble import RandomForestClassifier   # pylint: disable=g-import-not-at-top
  ds = small_shapes(num_points=512, train_size=1600, test_size=800)
  forest = RandomForestClassifier(n_estimators=100, random_state=0)
  forest.fit(radial_histograms(ds.train_x), ds.train_y[:, 1])
  predicted = forest.predict(radial_histograms(ds.test_x))
  shape_accuracy = np.mean(predicted == ds.test_y[:, 1])
  family_accuracy = np.mean(predicted // 4 == ds.test_y[:, 0])
  assert 0.4 < shape_accuracy < 0.95, shape_accuracy   # chance: 1/16
  assert family_accuracy > 0.6, family_accuracy        # chance: 1/4


def test_validation_split_is_held_out_of_train():
  fields = dict(name="shapes3d", num_points=64, train_size=80, test_size=32)
  full = load_dataset(dataset_config(**fields))
  held = load_dataset(dataset_config(eval_split="validation", validation_fraction=0.25,
                                     **fields))
  assert len(held.train_y) == 60 and len(held.test_y) == 20
  rows = lambda x: {r.tobytes() for r in x}
  assert not rows(held.train_x) & rows(held.test_x)
  assert rows(held.train_x) | rows(held.test_x) == rows(full.train_x)
  assert not rows(held.test_x) & rows(full.test_x)
  index = {r.tobytes(): i for i, r in enumerate(full.train_x)}
  for x, y in ((held.train_x, held.train_y), (held.test_x, held.test_y)):
    np.testing.assert_array_equal(y, full.train_y[[index[r.tobytes()] for r in x]])


@pytest.mark.parametrize("field,value", [("eval_split", "val"),
                                         ("validation_fraction", 1.0)])
def test_bad_eval_split_fields(field, value):
  fields = dict(name="shapes3d", num_points=64, train_size=64, test_size=32,
                eval_split="validation")
  fields[field] = value
  with pytest.raises(UserInputError, match=f"dataset.{field}") as e:
    load_dataset(dataset_config(**fields))
  assert_one_line_error(e)


def test_tfds_loaders_read_plain_mock_data():
  """The standard pipeline-testing idiom, with no data and no data_dir: the
  loaders read what tensorflow-datasets' mock serves instead of refusing the
  unprepared data set. hmnist builds its tree from the digits; CIFAR-100's
  mock draws coarse and fine labels independently, which is no tree, and the
  loader says so in one line (its other tests give the mock a tree)."""
  import tensorflow_datasets as tfds
  from hmlc_jax.data import load_dataset
  from tests.smoke import smoke_config
  with tfds.testing.mock_data(num_examples=64):
    data = load_dataset(smoke_config("hmnist_ghmlc").dataset)
    assert data.num_levels == 2 and len(data.train_x) > 0 and len(data.test_x) > 0
    with pytest.raises(UserInputError, match="labels are not a tree"):
      load_dataset(smoke_config("cifar100_ghmlc").dataset)


def test_a_long_tail_at_a_level_subsamples_train_only():
  """dataset.imbalance_ratio: the groups of imbalance_level keep exponentially
  falling counts, largest / smallest = the ratio even where the groups differ in
  size (ranked by size, not id); the test split stays balanced; data_spec.json
  records the counts."""
  from hmlc_jax.data import Dataset, long_tailed
  from hmlc_jax.workdir import data_spec
  fine = np.repeat(np.arange(6), 100)
  y = np.stack([fine // 2, fine], axis=1).astype(np.int32)          # 3 groups of 2 classes
  data = Dataset(name="t", kind="image", train_x=np.zeros((600, 2, 2, 1), np.uint8), train_y=y,
                 test_x=np.zeros((600, 2, 2, 1), np.uint8), test_y=y, num_classes=(3, 6),
                 level_names=("coarse", "fine"))
  tail = long_tailed(data, 10.0, 0, seed=0)
  counts = np.bincount(tail.train_y[:, 0], minlength=3)
  np.testing.assert_array_equal(counts, [200, round(200 / 10 ** 0.5), 20])
  assert len(tail.train_x) == counts.sum()
  np.testing.assert_array_equal(tail.test_y, y)
  spec = data_spec(tail)
  assert spec["train_class_counts"][0] == counts.tolist()
  assert spec["test_class_counts"][0] == [200, 200, 200]
  again = long_tailed(data, 10.0, 0, seed=0)
  np.testing.assert_array_equal(again.train_y, tail.train_y)
  with pytest.raises(UserInputError, match="imbalance_level"):
    long_tailed(data, 10.0, 2, seed=0)
  # Groups of 300, 100 and 200 (hfashion's are 3:1:1:1:3:1 at its middle level):
  # ranked 0, 2, 1; the head keeps what the tail allows, 100 / 0.1 caps nothing.
  sizes = (300, 100, 200)
  coarse = np.repeat(np.arange(3), sizes)
  uneven = Dataset(name="t", kind="image", train_x=np.zeros((600, 2, 2, 1), np.uint8),
                   train_y=np.stack([coarse, coarse], axis=1).astype(np.int32),
                   test_x=np.zeros((600, 2, 2, 1), np.uint8), test_y=y, num_classes=(3, 6),
                   level_names=("coarse", "fine"))
  counts = np.bincount(long_tailed(uneven, 10.0, 0, seed=0).train_y[:, 0], minlength=3)
  np.testing.assert_array_equal(counts, [300, 30, round(300 / 10 ** 0.5)])
  assert counts.max() / counts.min() == 10.0
