"""hmlc_jax: hierarchical multi-label contrastive learning in JAX.

Modules:
  losses     SupCon/SimCLR, HMC/HCE/HMCE, G-HMLC and A-HMLC as pure functions.
  gmm        1-D Gaussian mixtures fitted by EM inside the jitted graph.
  hierarchy  label trees: validation, prefix groups, HMLC survivor sets, weights.
  methods    the method table: config.method -> its loss on model outputs.
  models     Flax backbones, projection head, A-HMLC attention heads.
  data       data sets (hdigits, hfashion, hmnist, cifar100, modelnet40, shapes3d),
             on-device augmentation.
  train_state  config checks, optimiser, model and initial train state.
  train      pmapped train step, the loop, train_and_evaluate.
  workdir    a workdir's files; restore_trained, load_encoder, evaluate_workdir.
  evaluate   linear probe, kNN, silhouette, hierarchical consistency, variance.
  analysis   t-SNE figure, feature-group count.
  demo       evaluates every loss on a random hierarchical batch.
"""
__version__ = "0.1.0"
