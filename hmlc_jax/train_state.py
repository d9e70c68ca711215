"""The model and the train state: everything fixed before the first step (the
config checks, the step count, the optimiser, the model and its initial state).

`setup` builds them in one call for `hmlc_jax.train`; `hmlc_jax.workdir`
restores a trained state from a workdir's checkpoints into the same shapes.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Callable

from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from hmlc_jax import methods, models
from hmlc_jax.data import Dataset, augment
from hmlc_jax.errors import UserInputError

OPTIMIZERS = ("sgd", "lars", "adamw")
NAN_POLICIES = ("stop", "skip")


class TrainState(train_state.TrainState):
  """Optax train state plus BatchNorm statistics, the latest applied step's loss,
  and the count of rejected (non-finite) updates: ``skips`` in all,
  ``skip_run`` in a row now, ``longest_skip_run``, ``first_skip_step`` (-1: none)."""
  batch_stats: Any
  last_loss: jnp.ndarray
  skips: jnp.ndarray
  skip_run: jnp.ndarray
  longest_skip_run: jnp.ndarray
  first_skip_step: jnp.ndarray


def check_config(config: ml_collections.ConfigDict, data: Dataset) -> None:
  """Raises UserInputError naming the first bad field, before anything compiles
  or is written (the model is built, not initialised, to check its fields)."""
  methods.check_method(config, data.num_levels)
  for field in ("batch_size", "num_views", "checkpoint_every_steps", "log_every_steps"):
    if config[field] < 1:
      raise UserInputError(f"{field} must be at least 1, got {config[field]}")
  if not config.learning_rate > 0:
    raise UserInputError(f"learning_rate must be positive, got {config.learning_rate}")
  if config.optimizer not in OPTIMIZERS:
    raise UserInputError(f"unknown optimizer {config.optimizer!r}; choose one of "
                         f"{list(OPTIMIZERS)}")
  if config.num_train_steps <= 0 and not config.num_epochs > 0:
    raise UserInputError("set num_epochs > 0 or num_train_steps > 0")
  if config.nan_policy not in NAN_POLICIES:
    raise UserInputError(f"unknown nan_policy {config.nan_policy!r}; choose one of "
                         f"{list(NAN_POLICIES)}")
  if config.loss_block_rows < 0:
    raise UserInputError(f"loss_block_rows must be >= 0 (0: no blocks), got "
                         f"{config.loss_block_rows}")
  if config.max_skips < 1:
    raise UserInputError(f"max_skips must be at least 1, got {config.max_skips}")
  devices = jax.device_count()
  if config.batch_size % devices:
    raise UserInputError(f"batch_size {config.batch_size} is not divisible by the "
                         f"{devices} devices; use a multiple of {devices}")
  if config.eval.get("every_steps", 0) < 0:
    raise UserInputError(f"eval.every_steps must be >= 0 (0: only at the end), got "
                         f"{config.eval.every_steps}")
  feature_dir = config.eval.get("feature_dir", "")
  if feature_dir and not (os.path.isdir(feature_dir) and os.access(feature_dir, os.W_OK)):
    raise UserInputError(f"eval.feature_dir {feature_dir!r} is not a folder this process can "
                         f"write to (the evaluation's feature files go there)")
  build_model(config, data)


def total_steps(config: ml_collections.ConfigDict, num_train: int) -> int:
  """``num_train_steps``, or ``num_epochs`` worth of global batches when it is -1."""
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return max(1, math.ceil(config.num_epochs * num_train / config.batch_size))


def make_optimizer(config: ml_collections.ConfigDict, num_steps: int, num_train: int):
  """Optax optimiser: ``warmup_epochs`` of linear warm-up, then cosine decay to zero.

  The learning rate is a hyperparameter held in the optimiser state
  (`optax.inject_hyperparams`), and the train step sets it to
  ``schedule(state.step)`` before every update (`with_learning_rate`). The
  rate applied at a step is therefore the scheduled one even after skipped
  (non-finite) steps, which advance the step but apply no update; the rate
  logged is the rate applied, and the last step's is zero.

  Returns:
    (gradient transformation, learning-rate schedule).
  """
  warmup = min(num_steps - 1, round(config.warmup_epochs * num_train / config.batch_size))
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, warmup_steps=max(warmup, 0),
      decay_steps=max(num_steps, warmup + 1), end_value=0.0)

  def build(learning_rate):
    if config.optimizer == "sgd":
      return optax.chain(optax.add_decayed_weights(config.weight_decay),
                         optax.sgd(learning_rate, momentum=config.momentum))
    if config.optimizer == "lars":
      return optax.lars(learning_rate, weight_decay=config.weight_decay,
                        momentum=config.momentum)
    return optax.adamw(learning_rate, weight_decay=config.weight_decay)

  return optax.inject_hyperparams(build)(learning_rate=schedule(0)), schedule


def with_learning_rate(state: TrainState, learning_rate: jnp.ndarray) -> TrainState:
  """``state`` whose optimiser applies ``learning_rate`` at its next update."""
  opt_state = state.opt_state
  rate = jnp.asarray(learning_rate, opt_state.hyperparams["learning_rate"].dtype)
  return state.replace(opt_state=opt_state._replace(
      hyperparams=dict(opt_state.hyperparams, learning_rate=rate)))


def create_train_state(config: ml_collections.ConfigDict, model, sample_input: np.ndarray,
                       num_train: int) -> TrainState:
  """Initial state from ``config.seed``; ``sample_input`` is one model input ``[1, ...]``."""
  tx, _ = make_optimizer(config, total_steps(config, num_train), num_train)
  return _initial_state(config, model, sample_input, tx)


def _initial_state(config, model, sample_input, tx) -> TrainState:
  init = jax.jit(functools.partial(model.init, train=False))
  # "rbg" keys compile ~10x faster than threefry on CPU; init runs once, on one device.
  variables = init(jax.random.key(config.seed, impl="rbg"), jnp.asarray(sample_input))
  count = lambda value: jnp.full((), value, jnp.int32)
  return TrainState.create(apply_fn=model.apply, params=variables["params"],
                           batch_stats=variables.get("batch_stats", {}), tx=tx,
                           last_loss=jnp.zeros((), jnp.float32), skips=count(0),
                           skip_run=count(0), longest_skip_run=count(0),
                           first_skip_step=count(-1))


def build_model(config: ml_collections.ConfigDict, data: Dataset, axis_name=None):
  return models.create_model(config.model, num_levels=data.num_levels,
                             attention_heads=methods.uses_attention_heads(config.method),
                             axis_name=axis_name)


@dataclasses.dataclass(frozen=True)
class Setup:
  """What training starts from: ``model`` for the pmapped step (BatchNorm
  statistics synchronised over ``axis_name``), ``eval_model`` (the same
  network on one device, for evaluation), the initial ``state``, the learning
  rate ``schedule`` and ``num_steps``."""
  model: Any
  eval_model: Any
  state: TrainState
  schedule: Callable
  num_steps: int


def setup(config: ml_collections.ConfigDict, data: Dataset, axis_name=None) -> Setup:
  """The model, the optimiser and the initial state of a run on ``data``."""
  num_steps = total_steps(config, len(data.train_x))
  tx, schedule = make_optimizer(config, num_steps, len(data.train_x))
  eval_model = build_model(config, data)
  model = build_model(config, data, axis_name=axis_name) if axis_name else eval_model
  sample = augment.prepare_eval(data.train_x[:1], data.kind)
  return Setup(model=model, eval_model=eval_model, schedule=schedule, num_steps=num_steps,
               state=_initial_state(config, eval_model, sample, tx))
