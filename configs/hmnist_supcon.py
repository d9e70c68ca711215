"""supcon on hierarchical MNIST (needs tensorflow-datasets' mnist; 10 categories -> 100 paths).

    python main.py --config=configs/hmnist_supcon.py --workdir=runs/hmnist_supcon
    python main.py --config=configs/hmnist_supcon.py:smoke --workdir=/tmp/smoke
"""
from configs import common


def get_config(arg: str = ""):
  return common.hmnist("supcon", arg)
