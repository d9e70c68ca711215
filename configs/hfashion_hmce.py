"""hmce on hierarchical Fashion-MNIST (real data; 2 -> 6 -> 10 classes).

    python main.py --config=configs/hfashion_hmce.py --workdir=runs/hfashion_hmce
    python main.py --config=configs/hfashion_hmce.py:smoke --workdir=/tmp/smoke
"""
from configs import common


def get_config(arg: str = ""):
  return common.hfashion("hmce", arg)
