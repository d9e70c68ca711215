"""ghmlc on hierarchical Fashion-MNIST (real data; 2 -> 6 -> 10 classes).

    python main.py --config=configs/hfashion_ghmlc.py --workdir=runs/hfashion_ghmlc
    python main.py --config=configs/hfashion_ghmlc.py:smoke --workdir=/tmp/smoke
"""
from configs import common


def get_config(arg: str = ""):
  return common.hfashion("ghmlc", arg)
