"""Evaluate every loss on a random hierarchical batch (`main.py --mode=demo`).

    python main.py --config=configs/demo.py
    python main.py --config=configs/demo.py:smoke          # tiny, seconds
    python main.py --config=configs/demo.py --config.gmm.mask_grad=soft
"""
import dataclasses

import ml_collections

from hmlc_jax.gmm import GMMConfig


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 512          # examples; each has `num_views` rows
  config.num_views = 2
  config.embedding_dim = 128
  config.num_levels = 2            # H: hierarchy depth, coarsest level first
  config.branching = 10            # children per node of the random label tree
  config.temperature = 0.07
  config.base_temperature = 0.07
  config.layer_penalty = "exp"     # HMC/HCE/HMCE: "exp" or "pow2"
  config.level_weights = "uniform"  # G-HMLC/A-HMLC: "uniform", "exp", "pow2" or "w0,w1,..."
  config.full_weight = 0.0         # G-HMLC/A-HMLC extra terms (configs/common.py)
  config.instance_weight = 0.0
  config.enforce_hierarchy = False
  # GMMConfig's defaults, but a mixture per embedding: these embeddings are random.
  config.gmm = ml_collections.ConfigDict(dataclasses.asdict(GMMConfig(fit_over="sample")))
  config.timing_repeats = 5        # timed forward+grad calls per loss
  if arg == "smoke":
    config.batch_size, config.embedding_dim, config.timing_repeats = 16, 16, 1
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/demo.py; use '' or 'smoke'")
  return config
