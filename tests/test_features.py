"""Feature tables: a file table reads back what was written and deletes its file;
statistics, probe and kNN read block by block equal their one-block, in-memory
versions; a streamed data set's evaluation keeps its features in a file."""
import dataclasses
import os

import numpy as np
import pytest

from hmlc_jax import evaluate, features
from hmlc_jax.data import Dataset
from tests.test_evaluate import blobs, knn_oracle, probe_config


def test_file_table_reads_back_blocks_and_gathers_rows(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(37, 5)).astype(np.float32)
  table = features.FileTable(str(tmp_path / "f.f32"), 5)
  for start, stop in ((0, 10), (10, 30), (30, 37)):
    table.append(x[start:stop])
  assert len(table) == 37 and table.dim == 5
  np.testing.assert_array_equal(table.block(3, 30), x[3:30])
  np.testing.assert_array_equal(table.block(30, 99), x[30:])       # clipped at the end
  rows = rng.integers(0, 37, (4, 6))
  np.testing.assert_array_equal(table.take(rows), x[rows])
  with pytest.raises(ValueError, match="width 5"):
    table.append(x[:, :4])
  table.close()
  assert not os.path.exists(tmp_path / "f.f32")


def test_mean_std_over_many_blocks_equals_numpy_in_float64(monkeypatch):
  rng = np.random.default_rng(1)
  x = np.sort(rng.normal(loc=3.0, size=(100, 5)), axis=0).astype(np.float32)  # blocks differ
  monkeypatch.setattr(features, "BLOCK_BYTES", 4 * 5 * 7)                      # 7 rows a block
  mean, std = features.mean_std(features.ArrayTable(x))
  np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0), rtol=1e-6)
  np.testing.assert_allclose(std, x.astype(np.float64).std(axis=0) + 1e-6, rtol=1e-5)


def test_probe_and_knn_read_in_small_blocks_from_a_file_equal_the_in_memory_ones(
    tmp_path, monkeypatch):
  rng = np.random.default_rng(2)
  x, y = blobs(rng, 400)
  train_x, train_y, test_x, test_y = x[:300], y[:300], x[300:], y[300:]
  config = probe_config(probe_batch_size=32, probe_epochs=6)
  scale = features.mean_std(features.ArrayTable(train_x))
  levels_train = np.stack([train_y // 2, train_y], 1)
  levels_test = np.stack([test_y // 2, test_y], 1)
  want = evaluate.linear_probe(train_x, train_y, test_x, test_y, 4, config, 0, 3, scale)
  want_knn = evaluate.knn_accuracies(train_x, levels_train, test_x, levels_test, [2, 4], config)

  monkeypatch.setattr(features, "BLOCK_BYTES", 4 * 8 * 50)   # 50 rows: 6 blocks, 1 step a call
  table = features.FileTable(str(tmp_path / "train.f32"), 8)
  table.append(train_x)
  got = evaluate.linear_probe(table, train_y, test_x, test_y, 4, config, 0, 3, scale)
  got_knn = evaluate.knn_accuracies(table, levels_train, test_x, levels_test, [2, 4], config)
  table.close()

  for key in ("accuracy", "weight_decay", "epochs", "val_accuracy"):
    assert got[key] == want[key], key
  np.testing.assert_array_equal(got["top"], want["top"])
  assert got_knn[0] == want_knn[0]
  np.testing.assert_array_equal(got_knn[1], want_knn[1])
  oracle = knn_oracle(train_x, train_y, test_x, 4, config.knn_k, config.knn_temperature)
  np.testing.assert_array_equal(got_knn[1][:, 0], oracle)


def test_variance_and_silhouette_read_from_a_file_in_blocks_equal_the_array_ones(
    tmp_path, monkeypatch):
  rng = np.random.default_rng(4)
  z = (rng.normal(size=(300, 6)) + np.linspace(0, 3, 300)[:, None]).astype(np.float32)
  labels = np.stack([np.arange(300) % 2, np.arange(300) % 3], 1)
  unit = z / np.linalg.norm(z.astype(np.float64), axis=1, keepdims=True)
  oracle = np.trace(np.cov(unit.T, ddof=0))
  monkeypatch.setattr(features, "BLOCK_BYTES", 4 * 6 * 32)     # 32 rows a block
  table = features.FileTable(str(tmp_path / "z.f32"), 6)
  table.append(z)
  np.testing.assert_allclose(evaluate.embedding_variance(table), oracle, rtol=1e-10)
  assert (evaluate.silhouette_per_level(table, labels, max_points=100) ==
          evaluate.silhouette_per_level(z, labels, max_points=100))
  table.close()


class Streamed:
  """Images read by slices, not an array: what a streamed data set looks like."""

  def __init__(self, images):
    self.images, self.shape = images, images.shape

  def __len__(self):
    return len(self.images)

  def __getitem__(self, index):
    return self.images[index]


class Flatten:
  """A stand-in encoder: the representation is the first pixels, the embedding the next."""

  def apply(self, variables, x, train):
    flat = x.reshape(len(x), -1)
    return {"representation": flat[:, :12] + variables["shift"], "embedding": flat[:, 12:20]}


def test_a_streamed_data_set_is_evaluated_from_a_feature_file_with_the_same_numbers(
    tmp_path, monkeypatch):
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 4, 240)
  images = (rng.integers(0, 30, (240, 4, 4, 3)) + 60 * labels[:, None, None, None]
            ).astype(np.uint8)
  paths = np.stack([labels // 2, labels], 1).astype(np.int32)
  data = Dataset(name="toy", kind="image", train_x=images[:160], train_y=paths[:160],
                 test_x=images[160:], test_y=paths[160:], num_classes=(2, 4),
                 level_names=("coarse", "fine"))
  config = probe_config(batch_size=64, probe_epochs=3,
                        feature_dir=str(tmp_path / "features"))
  os.makedirs(config.feature_dir)
  written = []
  table_class = features.FileTable

  def recording(path, dim):
    written.append((path, dim))
    return table_class(path, dim)

  monkeypatch.setattr(features, "FileTable", recording)
  variables = {"shift": 0.5}
  in_memory = evaluate.evaluate_encoder(Flatten(), variables, data, config, seed=0)
  assert written == []
  streamed = evaluate.evaluate_encoder(
      Flatten(), variables, dataclasses.replace(data, train_x=Streamed(data.train_x)),
      config, seed=0)
  assert sorted((os.path.basename(path), dim) for path, dim in written) == [
      ("test_embedding.f32", 8), ("test_representation.f32", 12),
      ("train_representation.f32", 12)]
  assert all(path.startswith(config.feature_dir) for path, _ in written)
  assert os.listdir(config.feature_dir) == []                # deleted afterwards
  assert streamed == in_memory
  assert in_memory["linear_probe_accuracy"][1] > 0.5          # the toy task is learnable
