"""hfashion: IDX reading, Seo & Shin's hierarchy, subsampling and bad files."""
import gzip
import os

import numpy as np
import pytest

from hmlc_jax.data import hfashion, load_dataset
from hmlc_jax.errors import UserInputError
from tests.fixtures import section, write_fashion_idx, write_idx

# Seo & Shin (2019), Table 1, written out by name: (level 0, level 1) of each class.
PAPER = {"T-shirt/top": ("clothes", "tops"), "Trouser": ("clothes", "bottoms"),
         "Pullover": ("clothes", "tops"), "Dress": ("clothes", "dresses"),
         "Coat": ("clothes", "outers"), "Sandal": ("goods", "shoes"),
         "Shirt": ("clothes", "tops"), "Sneaker": ("goods", "shoes"),
         "Bag": ("goods", "accessories"), "Ankle boot": ("goods", "shoes")}
# Fashion-MNIST's label ids (its README), independent of the module's own list.
FASHION_IDS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]


def config(data_dir, **kw):
  return section("dataset", **dict(dict(name="hfashion", data_dir=str(data_dir), download=False),
                                   **kw))


def test_hierarchy_table_is_seo_and_shin():
  table = hfashion.hierarchy_table()
  assert list(hfashion.CLASS_NAMES) == FASHION_IDS
  for klass, name in enumerate(FASHION_IDS):
    level0, level1 = PAPER[name]
    assert table[klass].tolist() == [hfashion.LEVEL0.index(level0),
                                     hfashion.LEVEL1.index(level1), klass]
  assert sorted(set(map(tuple, table[:, :2].tolist()))) == [(0, 0), (0, 1), (0, 2), (0, 3),
                                                            (1, 4), (1, 5)]


@pytest.mark.parametrize("gz", [True, False])
def test_reads_idx_files_and_labels_the_tree(tmp_path, gz):
  root = write_fashion_idx(tmp_path, sizes=(60, 30), gz=gz)
  suffix = ".gz" if gz else ""
  with (gzip.open if gz else open)(
      os.path.join(root, "t10k-labels-idx1-ubyte" + suffix), "rb") as f:
    raw_test = np.frombuffer(f.read()[8:], np.uint8)
  ds = load_dataset(config(root))
  assert ds.name == "hfashion" and ds.num_classes == (2, 6, 10)
  assert ds.train_x.shape == (60, 28, 28, 1) and ds.train_x.dtype == np.uint8
  assert ds.test_x.shape == (30, 28, 28, 1)
  np.testing.assert_array_equal(ds.test_y[:, 2], raw_test)
  np.testing.assert_array_equal(ds.test_y, hfashion.hierarchy_table()[raw_test])


def test_subsampling_is_balanced_and_seeded(tmp_path):
  root = write_fashion_idx(tmp_path, sizes=(200, 30))
  a = load_dataset(config(root, train_size=50))
  b = load_dataset(config(root, train_size=50))
  c = load_dataset(config(root, train_size=50, seed=1))
  np.testing.assert_array_equal(a.train_x, b.train_x)
  assert not np.array_equal(a.train_x, c.train_x)
  assert np.bincount(a.train_y[:, 2], minlength=10).tolist() == [5] * 10
  assert len(a.test_y) == 30


def test_validation_split_holds_out_training_images(tmp_path):
  root = write_fashion_idx(tmp_path, sizes=(100, 30))
  ds = load_dataset(config(root, eval_split="validation", validation_fraction=0.2))
  assert len(ds.train_y) == 80 and len(ds.test_y) == 20
  full = load_dataset(config(root)).train_x.reshape(100, -1)
  rows = {r.tobytes() for r in full}
  assert all(r.tobytes() in rows for r in ds.test_x.reshape(20, -1))


def test_bad_files_are_named(tmp_path):
  root = write_fashion_idx(tmp_path / "a", sizes=(20, 10), gz=False)
  path = os.path.join(root, "train-images-idx3-ubyte")
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:-7])
  with pytest.raises(UserInputError, match="truncated"):
    load_dataset(config(root))
  os.remove(path)
  with pytest.raises(UserInputError, match="lacks train-images-idx3-ubyte"):
    load_dataset(config(root))
  root = write_fashion_idx(tmp_path / "b", sizes=(20, 10))
  write_idx(os.path.join(root, "train-labels-idx1-ubyte.gz"), np.full(20, 11))
  with pytest.raises(UserInputError, match=r"labels must lie in \[0, 10\)"):
    load_dataset(config(root))
  with pytest.raises(UserInputError, match="at least 10"):
    load_dataset(config(write_fashion_idx(tmp_path / "c", sizes=(20, 10)), train_size=5))


def test_offline_without_files_fails_fast_naming_where_to_put_them(tmp_path, monkeypatch):
  import socket
  import time

  def no_network(*args, **kwargs):
    raise OSError("network is unreachable")

  monkeypatch.setattr(socket, "create_connection", no_network)
  monkeypatch.setattr(hfashion, "DEBIAN_DIR", str(tmp_path / "no_debian_package"))
  empty = tmp_path / "empty"
  empty.mkdir()
  start = time.perf_counter()
  with pytest.raises(UserInputError, match="cannot reach the download servers") as error:
    load_dataset(config(empty, download=True))
  assert time.perf_counter() - start < 30
  assert "apt-get install -y dataset-fashion-mnist" in str(error.value)
  assert "\n" not in str(error.value)
  assert os.listdir(empty) == []       # nothing was downloaded or half-written
