"""ghmlc on ModelNet40 (coarse categories -> 40 classes), PointNet.

Needs the HDF5 release under dataset.data_dir (see docs/data.md):

    python main.py --config=configs/modelnet40_ghmlc.py \
        --config.dataset.data_dir=/path/to/modelnet40_ply_hdf5_2048 --workdir=runs/mn40_ghmlc
"""
from configs import common


def get_config(arg: str = ""):
  return common.point_clouds("modelnet40", "ghmlc", arg)
