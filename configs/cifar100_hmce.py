"""hmce on CIFAR-100 (20 superclasses -> 100 classes), CIFAR ResNet-18.

    python main.py --config=configs/cifar100_hmce.py --workdir=runs/cifar100_hmce
"""
from configs import common


def get_config(arg: str = ""):
  return common.cifar100("hmce", arg)
