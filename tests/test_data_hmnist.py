"""hmnist: the composite construction on (mock) tensorflow-datasets MNIST."""
import numpy as np
import pytest

from hmlc_jax.data import composite, hmnist
from hmlc_jax.errors import UserInputError
from tests.fixtures import section, MNIST_SIZES, mock_mnist, write_tfds_metadata
import tensorflow_datasets as tfds
from tests.smoke import build_on_data, smoke_config


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
  return write_tfds_metadata(tmp_path_factory.mktemp("tfds") / "mnist", "mnist", MNIST_SIZES)


def config(mnist_dir, **kw):
  return section("dataset", **dict(name="hmnist", data_dir=mnist_dir, download=False,
                                   train_size=200, test_size=100, canvas=40, **kw))


def test_composites_from_the_right_split(mnist_dir):
  with tfds.testing.mock_data(data_dir=mnist_dir, as_dataset_fn=mock_mnist):
    ds = hmnist.load(config(mnist_dir))
    train, test = tfds.load("mnist", split=["train", "test"], data_dir=mnist_dir,
                            batch_size=-1, download=False)
  assert ds.train_x.shape == (200, 40, 40, 1) and ds.test_x.shape == (100, 40, 40, 1)
  # Rebuild from the raw digits with the same seed: the test set only uses test images.
  rng = np.random.default_rng(0)
  layouts = []
  for split, size in ((train, 200), (test, 100)):
    digits = np.asarray(split["label"])
    layouts.append(composite.sample_layout(composite.sources_by_digit(digits), size, rng,
                                           40, 28))
  test_images = np.asarray(test["image"])[..., 0] / 255.0
  np.testing.assert_array_equal(ds.test_x, composite.render(test_images, layouts[1], 40))
  np.testing.assert_array_equal(ds.test_y, composite.labels_of(layouts[1]))
  assert np.array_equal(ds.train_y[:, 0], ds.train_y[:, 1] // 10)


def test_validation_composites_come_from_held_out_train_images(mnist_dir):
  with tfds.testing.mock_data(data_dir=mnist_dir, as_dataset_fn=mock_mnist):
    ds = hmnist.load(config(mnist_dir, eval_split="validation", validation_fraction=0.2))
    train = tfds.load("mnist", split="train", data_dir=mnist_dir, batch_size=-1,
                      download=False)
  rng = np.random.default_rng(0)
  kept, held = composite.hold_out(composite.sources_by_digit(np.asarray(train["label"])),
                                  0.2, rng)
  fit, val = (composite.sample_layout(src, size, rng, 40, 28)
              for src, size in ((kept, 200), (held, 100)))
  images = np.asarray(train["image"])[..., 0] / 255.0
  np.testing.assert_array_equal(ds.test_x, composite.render(images, val, 40))
  np.testing.assert_array_equal(ds.train_x, composite.render(images, fit, 40))
  assert not (set(val["big"]) | set(val["small"])) & (set(fit["big"]) | set(fit["small"]))


def test_bad_canvas_and_missing_data(mnist_dir, tmp_path):
  with pytest.raises(UserInputError, match="dataset.canvas"):
    hmnist.load(section("dataset", name="hmnist", canvas=20))
  with pytest.raises(UserInputError, match="tfds.load\\('mnist'\\)"):
    hmnist.load(config(str(tmp_path)))


def test_hmnist_smoke_config_builds_its_model_on_its_data(mnist_dir):
  """The :smoke config's model on its composites' shapes (the image family's whole
  runs: hdigits in tests/runs.py, hfashion in tests/test_learning.py; every
  method's step: tests/test_train.py)."""
  cfg = smoke_config("hmnist_ghmlc", **{"dataset.data_dir": mnist_dir,
                                        "dataset.download": False})
  with tfds.testing.mock_data(data_dir=mnist_dir, as_dataset_fn=mock_mnist):
    sample, out = build_on_data(cfg)
  canvas = cfg.dataset.canvas
  assert sample.shape == (2, canvas, canvas, 1)
  assert out["embedding"].shape == (2, cfg.model.projection_dim)
