"""ahmlc on hierarchical digits (embedded, offline; 10 categories -> 100 paths).

    python main.py --config=configs/hdigits_ahmlc.py --workdir=runs/hdigits_ahmlc
    python main.py --config=configs/hdigits_ahmlc.py:smoke --workdir=/tmp/smoke
"""
from configs import common


def get_config(arg: str = ""):
  return common.hdigits("ahmlc", arg)
