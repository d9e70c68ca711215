"""ghmlc on shapes3d (synthetic families of parametric point-cloud shapes; offline), PointNet.

    python main.py --config=configs/shapes3d_ghmlc.py --workdir=runs/shapes3d_ghmlc
"""
from configs import common


def get_config(arg: str = ""):
  return common.point_clouds("shapes3d", "ghmlc", arg)
