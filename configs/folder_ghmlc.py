"""ghmlc on your own labelled tree of images in folders (docs/data.md).

    python main.py --config=configs/folder_ghmlc.py --config.dataset.path=DIR

DIR/train/<level 0>/.../<leaf>/<images> and DIR/test/... (or a held-out
dataset.test_fraction). Small CNN at 32 px, 20 epochs; on a 2-core CPU about
1,000 examples/s of training.
"""
from configs import common


def get_config(arg: str = ""):
  return common.folder("ghmlc", arg)
