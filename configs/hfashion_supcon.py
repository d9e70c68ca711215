"""supcon on hierarchical Fashion-MNIST (real data; 2 -> 6 -> 10 classes).

    python main.py --config=configs/hfashion_supcon.py --workdir=runs/hfashion_supcon
    python main.py --config=configs/hfashion_supcon.py:smoke --workdir=/tmp/smoke
"""
from configs import common


def get_config(arg: str = ""):
  return common.hfashion("supcon", arg)
