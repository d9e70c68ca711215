"""A CIFAR-100 :smoke config trains and evaluates end to end on tensorflow-datasets
mock data (one method: every method's step is tests/test_train.py's)."""
import pytest
import tensorflow_datasets as tfds

from tests.fixtures import mock_as_dataset, write_cifar_metadata
from tests.smoke import run_and_check, smoke_config


@pytest.fixture(scope="module")
def mock_dir(tmp_path_factory):
  return write_cifar_metadata(tmp_path_factory.mktemp("tfds") / "meta")


def test_cifar100_smoke(mock_dir, tmp_path):
  config = smoke_config("cifar100_ahmlc", **{"dataset.data_dir": mock_dir,
                                                 "dataset.download": False})
  with tfds.testing.mock_data(data_dir=mock_dir, as_dataset_fn=mock_as_dataset):
    run_and_check(config, tmp_path / "run")
