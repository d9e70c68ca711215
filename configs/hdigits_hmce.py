"""hmce on hierarchical digits (embedded, offline; 10 categories -> 100 paths).

    python main.py --config=configs/hdigits_hmce.py --workdir=runs/hdigits_hmce
    python main.py --config=configs/hdigits_hmce.py:smoke --workdir=/tmp/smoke
"""
from configs import common


def get_config(arg: str = ""):
  return common.hdigits("hmce", arg)
