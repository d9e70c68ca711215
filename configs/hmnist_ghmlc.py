"""ghmlc on hierarchical MNIST (needs tensorflow-datasets' mnist; 10 categories -> 100 paths).

    python main.py --config=configs/hmnist_ghmlc.py --workdir=runs/hmnist_ghmlc
    python main.py --config=configs/hmnist_ghmlc.py:smoke --workdir=/tmp/smoke
"""
from configs import common


def get_config(arg: str = ""):
  return common.hmnist("ghmlc", arg)
