"""hmlc_jax: hierarchical multi-label contrastive learning in JAX.

Modules:
  losses     SupCon/SimCLR, HMC/HCE/HMCE, G-HMLC and A-HMLC as pure functions.
  gmm        1-D Gaussian mixtures fitted by EM inside the jitted graph.
  hierarchy  label trees: validation, prefix groups, HMLC survivor sets, weights.
  demo       evaluates every loss on a random hierarchical batch.
"""
__version__ = "0.1.0"
