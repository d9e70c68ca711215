"""Shared defaults for every training config; the per-file configs pick a data set
and a method and override what differs.

Durations: ``num_epochs`` (or ``num_train_steps`` > 0, which wins), warm-up in
epochs. ``batch_size`` is the global batch (examples; each gives ``num_views``
rows to the loss) and must divide by the number of devices. ``learning_rate``
is the peak of the warm-up + cosine schedule.
"""
import dataclasses

import ml_collections

from hmlc_jax.gmm import GMMConfig


def base_config(method: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = method                 # a key of hmlc_jax.methods.METHODS
  c.seed = 0
  c.batch_size = 512
  c.num_views = 2
  c.num_epochs = 100.0
  c.num_train_steps = -1            # > 0 overrides num_epochs
  c.optimizer = "sgd"               # sgd (momentum) | lars | adamw
  c.learning_rate = 0.5
  c.momentum = 0.9
  c.weight_decay = 1e-4
  c.warmup_epochs = 5.0
  # Losses (hmlc_jax.losses).
  c.temperature = 0.1
  c.base_temperature = 0.07
  c.layer_penalty = "exp"           # HMC/HCE/HMCE: exp | pow2
  c.level_weights = "uniform"       # G-/A-HMLC: uniform | exp | pow2 | a list of H numbers
  c.full_weight = 0.0
  c.instance_weight = 0.0           # G-/A-HMLC: weight of a SimCLR term on the whole embedding
  c.enforce_hierarchy = False
  c.loss_block_rows = 0             # > 0: the N x N similarities in blocks of this many rows
  c.gmm = ml_collections.ConfigDict(dataclasses.asdict(GMMConfig()))   # G-HMLC: hmlc_jax.gmm
  c.model = ml_collections.ConfigDict(dict(
      backbone="resnet18", width=64, projection_dim=128, projection_hidden_dim=0,
      attention_activation="sigmoid", dtype="float32",
      convs_per_stage=2, space_to_depth=1, pool="mean",   # these three: small_cnn only
      zero_init_residual=False,     # resnets: last BatchNorm scale of each block at 0
      cpu_kernels=False))           # hand-written CPU gradients (convolutions, BN+ReLU, pool)
  # Every data set's fields; a loader reads the ones it knows (hmlc_jax.data).
  c.dataset = ml_collections.ConfigDict(dict(
      name="cifar100", data_dir="", seed=0, download=True,
      train_size=0, test_size=0,    # 0: the data set's own size
      eval_split="test",            # or "validation": held out of train, to choose settings
      validation_fraction=0.1,
      num_points=1024,              # point clouds
      canvas=56,                    # hmnist: composite side in pixels
      level_order="category_first",  # hdigits, hmnist: or class_first (the digits swap roles)
      test_fraction=0.3,            # hdigits: source images kept for the test split;
                                    # folder: images held out when there is no test split
      path="",                      # folder: the folder that holds the splits
      layout="tree",                # folder: tree | taxonomy_names | csv
      train_split="train", test_split="test",   # folder: split folder (or CSV) names
      image_size=32, channels=3,    # folder: images resized to this square, 1 or 3 channels
      taxonomy_levels=7,            # folder, layout=taxonomy_names: names after the id
      imbalance_ratio=1.0,          # > 1: train split long-tailed over imbalance_level's classes
      imbalance_level=0,
      stream=False,                 # batches from a grain pipeline (folder: decoded on the fly)
      stream_threads=2, prefetch=2))  # stream: decoding threads, batches read ahead
  c.augment = image_augment()
  c.eval = ml_collections.ConfigDict(dict(
      batch_size=512, probe_epochs=30, probe_learning_rate=1e-3, probe_batch_size=512,
      probe_weight_decays=(0.0, 1e-4, 1e-3, 1e-2), probe_val_fraction=0.1,
      knn_k=20, knn_temperature=0.07,
      every_steps=0,                # > 0: also evaluate every so many steps (evaluations.json)
      feature_dir=""))              # streamed sets: training features' file here ("": $TMPDIR)
  c.nan_policy = "stop"              # a non-finite step: stop | skip (drop that update)
  c.max_skips = 5                   # skip: stop after this many non-finite steps in a row
  c.inject_nonfinite_at_step = -1   # testing: make this step's gradient non-finite
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.log_every_steps = 50
  c.progress_bar = True
  c.log_to_console = True
  c.tensorboard = True    # event files through clu's SummaryWriter (imports TensorFlow: 5-8 s)
  c.throughput = True     # results.json "throughput": model FLOP/s against the device (about 1 s)
  return c


def image_augment(**overrides) -> ml_collections.ConfigDict:
  """SimCLR-style image augmentation (hmlc_jax.data.augment)."""
  a = dict(crop_scale=(0.2, 1.0), crop_ratio=(3 / 4, 4 / 3), flip=True,
           color_jitter=(0.4, 0.4, 0.4, 0.1),
           jitter_prob=0.8, grayscale_prob=0.2)
  a.update(overrides)
  return ml_collections.ConfigDict(a)


def point_augment(**overrides) -> ml_collections.ConfigDict:
  """Point-cloud augmentation: scale, up-axis rotation, jitter, point dropout."""
  a = dict(scale=(0.8, 1.25), up_axis=2, jitter_sigma=0.01, jitter_clip=0.05,
           max_dropout=0.875)
  a.update(overrides)
  return ml_collections.ConfigDict(a)


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Seconds-long variant: tiny model, tiny data, a few steps, quick evaluation."""
  c.batch_size = 16
  c.num_train_steps = 3
  c.warmup_epochs = 0.0
  c.checkpoint_every_steps = 2
  c.log_every_steps = 1
  c.model.width = 4
  c.model.projection_dim = 16
  c.eval.batch_size = 64
  c.eval.probe_epochs = 2
  c.eval.probe_batch_size = 32
  c.eval.probe_weight_decays = (0.0, 1e-3)
  c.eval.knn_k = 5
  return c


def apply_variant(c: ml_collections.ConfigDict, arg: str, name: str) -> ml_collections.ConfigDict:
  """``""`` keeps the config, ``"smoke"`` shrinks it; anything else is an error."""
  if arg == "smoke":
    return smoke(c)
  if arg:
    raise ValueError(f"unknown variant {arg!r} of {name}; use '' or 'smoke'")
  return c


def small_cnn_on_cpu(method: str, dataset: str, augment: ml_collections.ConfigDict,
                     learning_rate: float) -> ml_collections.ConfigDict:
  """The 2-core CPU recipe shared by hdigits and hfashion: small CNN of width 32
  with a 2x2 space-to-depth stem (the step about 2x faster on CPU, docs/benchmarks.md),
  batch 256, AdamW (measured: SGD at 0.05-0.3 barely moves this small CNN),
  half an epoch of warm-up, and the hand-written CPU gradients
  (``model.cpu_kernels``). The caller sets the budget and data fields."""
  c = base_config(method)
  c.dataset.name = dataset
  c.model.update(backbone="small_cnn", width=32, convs_per_stage=1, space_to_depth=2,
                 cpu_kernels=True)
  c.augment = augment
  c.batch_size = 256
  c.warmup_epochs = 0.5
  c.optimizer = "adamw"
  c.learning_rate = learning_rate
  c.eval.probe_epochs = 30
  return c


def finish(c: ml_collections.ConfigDict, arg: str, name: str) -> ml_collections.ConfigDict:
  """`apply_variant`, and a small data set for ``:smoke``."""
  c = apply_variant(c, arg, name)
  if arg == "smoke":
    c.dataset.update(train_size=200, test_size=100)
  return c


def hdigits(method: str, arg: str) -> ml_collections.ConfigDict:
  """Hierarchical digits (embedded, offline), small CNN; the Quickstart's main job."""
  # Crops of 90-100% of the area at aspect 1 move the border by at most 1.6
  # pixels: the small category digit, around the class digit, stays in view.
  # Chosen on the validation split (results/hdigits/ablation_recipe): no colour
  # jitter and AdamW 8e-3, 96.8 / 96.1% against 90.5 / 88.5% with jitter and
  # 2e-3 (2 seeds each).
  c = small_cnn_on_cpu(method, "hdigits", image_augment(
      crop_scale=(0.9, 1.0), crop_ratio=(1.0, 1.0), flip=False, jitter_prob=0.0,
      grayscale_prob=0.0), 8e-3)
  c.dataset.update(train_size=20000, test_size=5000, validation_fraction=0.2)
  c.num_epochs = 5.0                # 391 steps: the whole run fits 10 min on 2 CPU cores
  c.checkpoint_every_steps = 100
  c.log_every_steps = 25
  return finish(c, arg, f"configs/hdigits_{method}.py")


def hfashion(method: str, arg: str) -> ml_collections.ConfigDict:
  """Hierarchical Fashion-MNIST (real images, 2 -> 6 -> 10), small CNN.

  The whole default job (60,000 training images, 1,300 steps of 256, then the
  evaluation) is sized to fit 15 minutes on 2 CPU cores even at this shared
  machine's slow hours (a step took 0.40-0.63 s there). Chosen on the
  validation split: crops of 80-100% of the area, flips, no colour jitter
  (grey images), AdamW 4e-3 (results/hfashion/ablation_recipe.md); the
  representation keeps the last 3x3 map's positions (``model.pool=flatten``,
  a 256-wide head) instead of averaging them: +2.0 points at the class level
  for 4% more step time (results/hfashion/ablation_pool.md).
  """
  c = small_cnn_on_cpu(method, "hfashion", image_augment(
      crop_scale=(0.8, 1.0), flip=True, jitter_prob=0.0, grayscale_prob=0.0), 4e-3)
  c.dataset.update(train_size=0, test_size=0, validation_fraction=0.1)
  c.model.update(pool="flatten", projection_hidden_dim=256)
  c.num_train_steps = 1300
  c.checkpoint_every_steps = 500
  c.log_every_steps = 100
  return finish(c, arg, f"configs/hfashion_{method}.py")


def folder(method: str, arg: str) -> ml_collections.ConfigDict:
  """Your own images in a folder tree (``hmlc_jax/data/folder.py``), resized to
  32 px, with the small-CNN CPU recipe; set ``dataset.path`` (and
  ``dataset.layout``, ``image_size``, ``channels`` as your data needs)."""
  c = small_cnn_on_cpu(method, "folder", image_augment(
      crop_scale=(0.8, 1.0), flip=True, jitter_prob=0.0, grayscale_prob=0.0), 4e-3)
  c.num_epochs = 20.0
  c.checkpoint_every_steps = 500
  return apply_variant(c, arg, f"configs/folder_{method}.py")


def inat2021(method: str, arg: str) -> ml_collections.ConfigDict:
  """iNaturalist 2021 "mini" from its official folders (``train_mini/`` and
  ``val/``, one folder per species named by its 7-level path: kingdom to
  genus, then the species epithet), CIFAR-style ResNet-50 at 224 px in
  bfloat16. The ``:smoke`` variant reads 32 px images (a synthetic tree in
  the same layout in the tests)."""
  c = base_config(method)
  c.dataset.update(name="folder", layout="taxonomy_names", train_split="train_mini",
                   test_split="val", image_size=224, channels=3, taxonomy_levels=7)
  c.model.update(backbone="resnet50", width=64, dtype="bfloat16")
  c.augment = image_augment(crop_scale=(0.2, 1.0), flip=True)
  c.batch_size = 1024
  c.num_epochs = 100.0
  c.warmup_epochs = 5.0
  c.learning_rate = 0.5
  c.checkpoint_every_steps = 1000
  c = apply_variant(c, arg, f"configs/inat2021_{method}.py")
  if arg == "smoke":
    c.dataset.image_size = 32
  return c


def hmnist(method: str, arg: str) -> ml_collections.ConfigDict:
  """Hierarchical MNIST (tensorflow-datasets MNIST, 56x56 composites), CIFAR ResNet-18."""
  c = base_config(method)
  c.dataset.update(name="hmnist", train_size=60000, test_size=10000)
  c.model.update(backbone="resnet18", width=64, dtype="bfloat16")
  c.augment = image_augment(crop_scale=(0.6, 1.0), flip=False, grayscale_prob=0.0)
  c.batch_size = 512
  c.num_epochs = 50.0
  c.warmup_epochs = 2.0
  c.learning_rate = 0.5
  c = apply_variant(c, arg, f"configs/hmnist_{method}.py")
  if arg == "smoke":
    c.model.update(backbone="small_cnn", convs_per_stage=1, dtype="float32")
    c.dataset.update(train_size=200, test_size=100, canvas=32)
  return c


def cifar100(method: str, arg: str) -> ml_collections.ConfigDict:
  """CIFAR-100 (20 superclasses -> 100 classes) through tensorflow-datasets, ResNet-18."""
  c = base_config(method)
  c.dataset.update(name="cifar100")
  c.model.update(backbone="resnet18", width=64, dtype="bfloat16")
  c.batch_size = 1024
  c.num_epochs = 500.0
  c.warmup_epochs = 10.0
  c.learning_rate = 0.5
  c.checkpoint_every_steps = 1000
  return apply_variant(c, arg, f"configs/cifar100_{method}.py")   # :smoke keeps bfloat16


def point_clouds(name: str, method: str, arg: str) -> ml_collections.ConfigDict:
  """ModelNet40 or shapes3d with PointNet."""
  c = base_config(method)
  c.dataset.update(name=name, num_points=1024)
  c.model.update(backbone="pointnet", width=64)
  c.augment = point_augment(up_axis=1 if name == "modelnet40" else 2)
  c.batch_size = 256
  c.num_epochs = 200.0
  c.warmup_epochs = 10.0
  c.learning_rate = 0.1
  c.checkpoint_every_steps = 500
  if name == "shapes3d":
    c.dataset.update(train_size=4000, test_size=1000)
    c.num_epochs = 30.0
  c = apply_variant(c, arg, f"configs/{name}_{method}.py")
  if arg == "smoke":
    c.dataset.num_points = 64
    if name == "shapes3d":
      c.dataset.update(train_size=64, test_size=32)
  return c
