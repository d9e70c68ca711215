"""hmce on hierarchical MNIST (needs tensorflow-datasets' mnist; 10 categories -> 100 paths).

    python main.py --config=configs/hmnist_hmce.py --workdir=runs/hmnist_hmce
    python main.py --config=configs/hmnist_hmce.py:smoke --workdir=/tmp/smoke
"""
from configs import common


def get_config(arg: str = ""):
  return common.hmnist("hmce", arg)
