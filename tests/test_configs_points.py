"""The point-cloud family end to end: the ModelNet40 :smoke config on a tiny HDF5
release (every method's step: tests/test_train.py; one whole run per data-set
family). The shapes3d config shares its backbone and loop: its model is built
on its data's shapes without compiling (its loader: tests/test_data_loaders.py)."""
import pytest

from tests.fixtures import write_modelnet
from tests.smoke import build_on_data, run_and_check, smoke_config


@pytest.fixture(scope="module")
def modelnet_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("modelnet40_ply_hdf5_2048")
  write_modelnet(str(root), points_per_cloud=80)
  return str(root)


def test_modelnet40_smoke(modelnet_dir, tmp_path):
  config = smoke_config("modelnet40_hmce", **{"dataset.data_dir": modelnet_dir})
  run_and_check(config, tmp_path)


def test_shapes3d_smoke_config_builds_its_model_on_its_data():
  config = smoke_config("shapes3d_ghmlc")
  sample, out = build_on_data(config)
  assert sample.shape == (2, config.dataset.num_points, 3)
  assert out["embedding"].shape == (2, config.model.projection_dim)
