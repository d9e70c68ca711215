"""supcon on hierarchical digits (embedded, offline; 10 categories -> 100 paths).

    python main.py --config=configs/hdigits_supcon.py --workdir=runs/hdigits_supcon
    python main.py --config=configs/hdigits_supcon.py:smoke --workdir=/tmp/smoke
"""
from configs import common


def get_config(arg: str = ""):
  return common.hdigits("supcon", arg)
