"""hmlc_jax: hierarchical multi-label contrastive learning in JAX.

Modules:
  losses     SupCon/SimCLR, HMC/HCE/HMCE, G-HMLC and A-HMLC as pure functions.
  gmm        1-D Gaussian mixtures fitted by EM inside the jitted graph.
  hierarchy  label trees: validation, prefix groups, HMLC survivor sets, weights.
  methods    config.method -> the training loss on model outputs.
  models     Flax backbones, projection head, A-HMLC attention heads.
  data       data sets (hdigits, cifar100, modelnet40, shapes3d), augmentation.
  train      pmapped training loop, checkpoints, train_and_evaluate, load_encoder.
  evaluate   linear probe, kNN, hierarchical consistency, embedding variance.
  demo       evaluates every loss on a random hierarchical batch.
"""
__version__ = "0.1.0"
