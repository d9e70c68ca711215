"""A ModelNet40 :smoke config on a tiny HDF5 release and the shapes3d one (offline)
end to end (every method's step: tests/test_train.py)."""
import pytest

from tests.fixtures import write_modelnet
from tests.smoke import run_and_check, smoke_config


@pytest.fixture(scope="module")
def modelnet_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("modelnet40_ply_hdf5_2048")
  write_modelnet(str(root), points_per_cloud=80)
  return str(root)


def test_modelnet40_smoke(modelnet_dir, tmp_path):
  config = smoke_config("modelnet40_hmce", **{"dataset.data_dir": modelnet_dir})
  run_and_check(config, tmp_path)


def test_shapes3d_smoke(tmp_path):
  run_and_check(smoke_config("shapes3d_ghmlc"), tmp_path)
