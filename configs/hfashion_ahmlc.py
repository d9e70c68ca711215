"""ahmlc on hierarchical Fashion-MNIST (real data; 2 -> 6 -> 10 classes).

    python main.py --config=configs/hfashion_ahmlc.py --workdir=runs/hfashion_ahmlc
    python main.py --config=configs/hfashion_ahmlc.py:smoke --workdir=/tmp/smoke
"""
from configs import common


def get_config(arg: str = ""):
  return common.hfashion("ahmlc", arg)
