"""Contrastive pre-training, data parallel with `jax.pmap`, then evaluation.

`train_and_evaluate(config, workdir)` is the entry point: it builds the data
set and model, resumes from the newest checkpoint in ``workdir/checkpoints``
(if any), trains to ``num_train_steps`` with a pmapped `train_step`, then
evaluates the frozen encoder (linear probe, kNN, ...) and writes
``workdir/results.json``. `load_encoder(workdir)` gives users the trained
encoder as a jitted function.

Conventions: the global batch of ``config.batch_size`` examples is split
evenly over the local devices; batch ``s`` is a pure function of
``(config.seed, s)`` and every example's augmentation of ``(config.seed, s,
its position in the global batch)``, so a run sees the same data on one or
many devices and after a resume.
"""
from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any, Callable, Dict, Tuple

from absl import logging
import flax
from flax import jax_utils
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from hmlc_jax import evaluate, methods, models, progress
from hmlc_jax.data import Dataset, augment, load_dataset
from hmlc_jax.errors import UserInputError

AXIS = "batch"
OPTIMIZERS = ("sgd", "lars", "adamw")


class TrainState(train_state.TrainState):
  """Optax train state plus BatchNorm statistics and the latest step's loss."""
  batch_stats: Any
  last_loss: jnp.ndarray


class NonFiniteError(RuntimeError):
  """Training produced a non-finite loss or parameters; nothing was saved."""


# ----------------------------------------------------------------------------
# Set-up


def check_config(config: ml_collections.ConfigDict, num_levels: int) -> None:
  """Raises UserInputError naming the first bad field, before anything compiles."""
  methods.check_method(config, num_levels)
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
  devices = jax.local_device_count()
  if config.batch_size % devices:
    raise UserInputError(f"batch_size {config.batch_size} is not divisible by the "
                         f"{devices} local devices; use a multiple of {devices}")


def total_steps(config: ml_collections.ConfigDict, num_train: int) -> int:
  """``num_train_steps``, or ``num_epochs`` worth of global batches when it is -1."""
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return max(1, math.ceil(config.num_epochs * num_train / config.batch_size))


def make_optimizer(config: ml_collections.ConfigDict, num_steps: int, num_train: int):
  """Optax optimiser: ``warmup_epochs`` of linear warm-up, then cosine decay to zero.

  Returns:
    (gradient transformation, learning-rate schedule).
  """
  warmup = min(num_steps - 1, round(config.warmup_epochs * num_train / config.batch_size))
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, warmup_steps=max(warmup, 0),
      decay_steps=max(num_steps, warmup + 1), end_value=0.0)
  if config.optimizer == "sgd":
    tx = optax.chain(optax.add_decayed_weights(config.weight_decay),
                     optax.sgd(schedule, momentum=config.momentum))
  elif config.optimizer == "lars":
    tx = optax.lars(schedule, weight_decay=config.weight_decay, momentum=config.momentum)
  else:
    tx = optax.adamw(schedule, weight_decay=config.weight_decay)
  return tx, schedule


def create_train_state(config: ml_collections.ConfigDict, model, sample_input: np.ndarray,
                       num_train: int) -> TrainState:
  """Initial state from ``config.seed``; ``sample_input`` is one model input ``[1, ...]``."""
  init = jax.jit(functools.partial(model.init, train=False))
  # "rbg" keys compile ~10x faster than threefry on CPU; init runs once, on one device.
  variables = init(jax.random.key(config.seed, impl="rbg"), jnp.asarray(sample_input))
  tx, _ = make_optimizer(config, total_steps(config, num_train), num_train)
  return TrainState.create(apply_fn=model.apply, params=variables["params"],
                           batch_stats=variables.get("batch_stats", {}), tx=tx,
                           last_loss=jnp.zeros((), jnp.float32))


# ----------------------------------------------------------------------------
# Data order


def batch_indices(seed: int, step: int, num_examples: int, batch_size: int) -> np.ndarray:
  """Training-set indices of global batch ``step`` (a pure function of its arguments).

  The data are read as a stream of epochs, each a fresh permutation seeded by
  ``(seed, epoch)``; batch ``step`` is stream positions
  ``[step * batch_size, (step + 1) * batch_size)``.
  """
  positions = step * batch_size + np.arange(batch_size)
  epochs, within = np.divmod(positions, num_examples)
  out = np.empty(batch_size, np.int64)
  for epoch in np.unique(epochs):
    order = np.random.default_rng([seed, int(epoch)]).permutation(num_examples)
    sel = epochs == epoch
    out[sel] = order[within[sel]]
  return out


def device_batch(data: Dataset, config: ml_collections.ConfigDict, step: int) -> Dict:
  """Global batch ``step`` as host arrays with a leading local-device axis.

  Returns:
    ``x`` ``[devices, b, ...]`` raw inputs, ``y`` int32 ``[devices, b, H]`` and
    ``position`` int32 ``[devices, b]`` (place in the global batch).
  """
  idx = batch_indices(config.seed, step, len(data.train_x), config.batch_size)
  devices = jax.local_device_count()
  split = lambda a: a.reshape((devices, -1) + a.shape[1:])
  return {"x": split(data.train_x[idx]), "y": split(data.train_y[idx]),
          "position": split(np.arange(config.batch_size, dtype=np.int32))}


def replicate(tree):
  """One copy of every leaf per local device, on a mesh named like the pmap axis, so
  the pmapped step does not compile a second time for its own outputs."""
  return jax_utils.replicate(tree, axis_name=AXIS)


# ----------------------------------------------------------------------------
# The step


def train_step(state: TrainState, batch: Dict, *, model, config: ml_collections.ConfigDict,
               kind: str, schedule: Callable) -> Tuple[TrainState, Dict]:
  """One optimisation step on one device's share of the global batch (run under pmap).

  Args:
    state: replicated train state.
    batch: this device's ``x`` [b, ...], ``y`` [b, H], ``position`` [b].
    model, config, kind, schedule: bound with `functools.partial` before pmap.

  Returns:
    (new state, metrics averaged over devices).
  """
  keys = augment.example_keys(config.seed, state.step, batch["position"], config.num_views)
  views = augment.augment_batch(keys, batch["x"], kind, config.augment)   # [b, V, ...]
  b, v = views.shape[:2]
  flat = views.reshape((b * v,) + views.shape[2:])

  def loss_fn(params):
    outputs, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                   flat, train=True, mutable=["batch_stats"])
    embeddings = outputs["embedding"].reshape(b, v, -1)
    masks = outputs.get("masks")
    if masks is not None:
      masks = masks.reshape((b, v) + masks.shape[1:])
    loss, metrics = methods.method_loss(config, embeddings, masks, batch["y"], AXIS)
    return loss, (metrics, updates["batch_stats"])

  (loss, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  # The losses return the global-batch loss on every device and each device's
  # share of its gradient: summing the shares gives the full gradient.
  grads = jax.lax.psum(grads, AXIS)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats, last_loss=loss)
  metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads),
                 learning_rate=schedule(state.step - 1))
  return state, jax.lax.pmean(metrics, AXIS)


def pmapped_train_step(model, config: ml_collections.ConfigDict, kind: str, schedule):
  step = functools.partial(train_step, model=model, config=config, kind=kind,
                           schedule=schedule)
  return jax.pmap(step, axis_name=AXIS, donate_argnums=(0,))


# ----------------------------------------------------------------------------
# Checkpoints


def checkpoint_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


def restore_latest(manager: ocp.CheckpointManager, state: TrainState) -> TrainState:
  """``state`` with the newest checkpoint's values, or ``state`` when there is none."""
  step = manager.latest_step()
  if step is None:
    return state
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def restore_trained(workdir: str, config: ml_collections.ConfigDict, model,
                    sample_input: np.ndarray, num_train: int) -> TrainState:
  """The newest checkpoint of ``workdir``; UserInputError when there is none."""
  manager = checkpoint_manager(workdir, config)
  if manager.latest_step() is None:
    manager.close()
    raise UserInputError(f"no checkpoint under {workdir}/checkpoints; train first "
                         f"(--mode=train)")
  state = restore_latest(manager, create_train_state(config, model, sample_input, num_train))
  manager.close()
  return state


def save_checkpoint(manager: ocp.CheckpointManager, state: TrainState) -> None:
  """Saves the (unreplicated) ``state`` at its step after checking it is finite."""
  saved = (state.params, state.batch_stats, state.opt_state, state.last_loss)
  if not all_finite(saved):
    raise NonFiniteError(f"non-finite values in the train state at step {int(state.step)}; not saved "
                         f"(last checkpoint: step {manager.latest_step()})")
  manager.save(int(state.step), args=ocp.args.StandardSave(state))


@jax.jit
def _all_finite(tree) -> jnp.ndarray:
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def all_finite(tree) -> bool:
  return bool(_all_finite(tree))


# ----------------------------------------------------------------------------
# The run


def build_model(config: ml_collections.ConfigDict, data: Dataset, axis_name=None):
  return models.create_model(config.model, num_levels=data.num_levels,
                             attention_heads=methods.uses_attention_heads(config.method),
                             axis_name=axis_name)


def train(config: ml_collections.ConfigDict, workdir: str, data: Dataset) -> Dict[str, Any]:
  """Trains (resuming if possible) and returns the final state and run statistics."""
  num_steps = total_steps(config, len(data.train_x))
  model = build_model(config, data, axis_name=AXIS)
  sample = augment.prepare_eval(data.train_x[:1], data.kind)
  state = create_train_state(config, model, sample, len(data.train_x))
  manager = checkpoint_manager(workdir, config)
  state = restore_latest(manager, state)
  start = int(state.step)
  if start:
    logging.warning("resuming from the checkpoint at step %d", start)
  _, schedule = make_optimizer(config, num_steps, len(data.train_x))
  p_step = pmapped_train_step(model, config, data.kind, schedule)
  lead = jax.process_index() == 0
  writer = progress.create_writer(os.path.join(workdir, "tensorboard") if lead else None,
                                  console=lead and config.log_to_console)
  bar = progress.progress_bar(num_steps, start, enabled=lead and config.progress_bar)
  replicated = replicate(state)
  metrics, timed_from, t0 = None, None, time.perf_counter()
  for step in range(start, num_steps):
    replicated, metrics = p_step(replicated, device_batch(data, config, step))
    done = step + 1
    if done == start + 1:               # the first step includes compilation
      jax.block_until_ready(metrics)
      timed_from, t0 = done, time.perf_counter()
    if done % config.log_every_steps == 0 or done == num_steps:
      scalars = jax.device_get(jax_utils.unreplicate(metrics))
      check_finite_loss(scalars, done, manager)
      writer.write_scalars(done, scalars)
      bar.set_postfix(loss=f"{float(scalars['loss']):.4f}", refresh=False)
    if done % config.checkpoint_every_steps == 0 or done == num_steps:
      save_checkpoint(manager, jax_utils.unreplicate(replicated))
    bar.update(1)
  jax.block_until_ready(replicated)
  elapsed = time.perf_counter() - t0
  bar.close()
  manager.wait_until_finished()
  writer.close()
  state = jax_utils.unreplicate(replicated)
  manager.close()
  timed = num_steps - timed_from if timed_from is not None else 0
  return {"state": state, "model": build_model(config, data), "steps": num_steps,
          "train_loss": float(state.last_loss),
          "examples_per_sec": (timed * config.batch_size / elapsed) if timed else None}


def check_finite_loss(scalars: Dict, step: int, manager) -> None:
  if not np.isfinite(scalars["loss"]):
    raise NonFiniteError(f"non-finite loss at step {step}; nothing saved after the last "
                         f"checkpoint (step {manager.latest_step()})")


def read_json(workdir: str, name: str) -> Dict[str, Any]:
  """``workdir/name`` parsed, or UserInputError when it is missing."""
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    raise UserInputError(f"{path} not found: is {workdir} a training workdir?")
  with open(path) as f:
    return json.load(f)


def write_json(path: str, payload: Dict[str, Any]) -> None:
  """Writes atomically (temporary file, then rename)."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Trains (or resumes), evaluates the frozen encoder and writes ``results.json``.

  Returns:
    the results dict (also written to ``workdir/results.json``).
  """
  wall_start = time.perf_counter()
  data = load_dataset(config.dataset)
  check_config(config, data.num_levels)
  build_model(config, data)             # validates config.model before anything is written
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, "config.json"), config.to_dict())
  write_json(os.path.join(workdir, "data_spec.json"), data_spec(data))
  run = train(config, workdir, data)
  variables = {"params": run["state"].params, "batch_stats": run["state"].batch_stats}
  scores = evaluate.evaluate_encoder(run["model"], variables, data, config.eval, config.seed)
  results = dict(scores, train_loss=run["train_loss"], steps=run["steps"],
                 examples_per_sec=run["examples_per_sec"],
                 wall_seconds=time.perf_counter() - wall_start,
                 level_names=list(data.level_names), config=config.to_dict())
  if jax.process_index() == 0:
    write_json(os.path.join(workdir, "results.json"), results)
  return results


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Re-evaluates the newest checkpoint of ``workdir`` and updates its ``results.json``."""
  data = load_dataset(config.dataset)
  check_config(config, data.num_levels)
  model = build_model(config, data)
  state = restore_trained(workdir, config, model,
                          augment.prepare_eval(data.train_x[:1], data.kind), len(data.train_x))
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  scores = evaluate.evaluate_encoder(model, variables, data, config.eval, config.seed)
  path = os.path.join(workdir, "results.json")
  results = read_json(workdir, "results.json") if os.path.exists(path) else {}
  results.update(scores, steps=int(state.step), train_loss=float(state.last_loss),
                 level_names=list(data.level_names), config=config.to_dict())
  if jax.process_index() == 0:
    write_json(path, results)
  return results


def summary(results: Dict[str, Any], workdir: str) -> str:
  """A few lines for the console: accuracies per level and where the results are."""
  names = results.get("level_names") or [str(h) for h in
                                          range(len(results["linear_probe_accuracy"]))]
  per_level = lambda key: ", ".join(f"{n} {100 * a:.2f}%" for n, a in zip(names, results[key]))
  return "\n".join([
      f"linear probe: {per_level('linear_probe_accuracy')}",
      f"kNN:          {per_level('knn_accuracy')}",
      f"hierarchical consistency {results['hierarchical_consistency']:.4f}, "
      f"embedding variance {results['embedding_variance']:.4f}, "
      f"train loss {results['train_loss']:.4f} after {results['steps']} steps",
      f"results: {os.path.join(workdir, 'results.json')}"])


# ----------------------------------------------------------------------------
# Reuse


def data_spec(data: Dataset) -> Dict[str, Any]:
  """What `load_encoder` needs to know of the data without loading it."""
  return {"name": data.name, "kind": data.kind, "num_levels": data.num_levels,
          "num_train": len(data.train_x), "input_shape": list(data.train_x.shape[1:]),
          "input_dtype": str(data.train_x.dtype), "num_classes": list(data.num_classes),
          "level_names": list(data.level_names)}


def load_encoder(workdir: str) -> Callable[[Any], Dict[str, jnp.ndarray]]:
  """The trained encoder of ``workdir`` (newest checkpoint) as a jitted function.

  Returns:
    ``encode(inputs) -> {"representation": [N, R], "embedding": [N, D]}``
    taking raw inputs as the data set stores them (uint8 images ``[N, H, W,
    C]`` or float point clouds ``[N, P, 3]``); evaluation mode, no augmentation.
  """
  config, spec = (ml_collections.ConfigDict(read_json(workdir, name))
                  for name in ("config.json", "data_spec.json"))
  model = models.create_model(config.model, num_levels=spec.num_levels,
                              attention_heads=methods.uses_attention_heads(config.method))
  kind = spec.kind
  sample = augment.prepare_eval(np.zeros([1] + list(spec.input_shape), spec.input_dtype), kind)
  state = restore_trained(workdir, config, model, sample, spec.num_train)
  variables = {"params": state.params, "batch_stats": state.batch_stats}

  @jax.jit
  def encode(inputs):
    outputs = model.apply(variables, augment.prepare_eval(inputs, kind), train=False)
    return {k: outputs[k] for k in ("representation", "embedding")}
  return encode
