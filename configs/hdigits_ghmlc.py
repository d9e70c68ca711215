"""ghmlc on hierarchical digits (embedded, offline; 10 categories -> 100 paths).

    python main.py --config=configs/hdigits_ghmlc.py --workdir=runs/hdigits_ghmlc
    python main.py --config=configs/hdigits_ghmlc.py:smoke --workdir=/tmp/smoke
"""
from configs import common


def get_config(arg: str = ""):
  return common.hdigits("ghmlc", arg)
