"""Runs a config's `:smoke` variant in-process and checks what every run must produce."""
from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np

from hmlc_jax import train

ROOT = Path(__file__).resolve().parents[1]
RESULT_KEYS = {"linear_probe_accuracy", "knn_accuracy", "hierarchical_consistency",
               "embedding_variance", "train_loss", "steps", "examples_per_sec",
               "wall_seconds", "config"}


def smoke_config(name: str, **overrides):
  """``configs/<name>.py:smoke`` with dotted-name overrides (``dataset.data_dir=...``),
  without TensorBoard output (its TensorFlow import; tests/runs.py checks the events).
  ``name`` may also be a function of configs/common.py and a method, as in
  ``"hfashion_simclr"`` for the methods without a file of their own."""
  path = ROOT / "configs" / f"{name}.py"
  if path.exists():
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
  else:
    from configs import common
    family, method = name.rsplit("_", 1)
    config = getattr(common, family)(method, "smoke")
  config.tensorboard = False
  config.throughput = False
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


LEARNING_STEPS = 100


def learning_config(method: str, data_dir: str):
  """tests/test_learning.py's run of ``method`` on Fashion-MNIST-shaped IDX files
  in ``data_dir`` (`tests.fixtures.write_fashion_idx`). tests/test_train.py
  takes its single steps with the same configs, so the two compile the same
  train-step programs (the compilation cache serves whichever comes second)."""
  return smoke_config(
      f"hfashion_{method}", **{"dataset.data_dir": data_dir, "dataset.train_size": 0,
                               "dataset.test_size": 0, "num_train_steps": LEARNING_STEPS,
                               "batch_size": 64, "learning_rate": 5e-3, "model.width": 8,
                               "model.projection_dim": 32,
                               "checkpoint_every_steps": LEARNING_STEPS,
                               "log_every_steps": LEARNING_STEPS, "progress_bar": False,
                               "log_to_console": False, "eval.probe_epochs": 40,
                               # the augmentation the margins were measured with
                               "augment.crop_scale": (0.6, 1.0), "augment.jitter_prob": 0.8})


def build_on_data(config):
  """Builds ``config``'s model on two of its data's evaluation inputs, shapes
  only (nothing compiled): ``(inputs, outputs)`` as ShapeDtypeStructs. For the
  configs whose family has its whole run elsewhere."""
  import jax
  from hmlc_jax import train_state
  from hmlc_jax.data import augment, load_dataset
  data = load_dataset(config.dataset)
  model = train_state.build_model(config, data)
  sample = jax.eval_shape(lambda: augment.prepare_eval(data.train_x[:2], data.kind))
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), sample)
  return sample, jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, sample)


def run_and_check(config, workdir: str, num_levels: int = 2) -> dict:
  """Trains + evaluates in-process; asserts the results and the files of the run."""
  results = train.train_and_evaluate(config, str(workdir))
  assert RESULT_KEYS <= set(results)
  assert results["steps"] == config.num_train_steps
  assert math.isfinite(results["train_loss"]) and results["train_loss"] > 0
  for key in ("linear_probe_accuracy", "knn_accuracy"):
    assert len(results[key]) == num_levels
    assert all(0.0 <= a <= 1.0 for a in results[key])
  assert 0.0 <= results["hierarchical_consistency"] <= 1.0
  assert 0.0 <= results["embedding_variance"] <= 1.0
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["train_loss"] == results["train_loss"]
  steps = sorted(int(p) for p in os.listdir(os.path.join(workdir, "checkpoints")) if p.isdigit())
  assert steps[-1] == config.num_train_steps
  assert np.isfinite(results["train_loss"])
  return results
