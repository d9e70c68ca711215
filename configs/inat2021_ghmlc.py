"""ghmlc on iNaturalist 2021 mini: 7 levels (kingdom -> species), ResNet-50 at 224 px.

    python main.py --config=configs/inat2021_ghmlc.py --config.dataset.path=DIR

DIR holds the official train_mini/ and val/ folders. The images are read into
host memory (500,000 training images at 224 px: about 75 GB), so the full set
needs a host that large; the loader says so before decoding. Cost on
accelerators: not measured.
"""
from configs import common


def get_config(arg: str = ""):
  return common.inat2021("ghmlc", arg)
