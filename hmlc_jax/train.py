"""Contrastive pre-training, data parallel with `jax.pmap`, then evaluation.

`train_and_evaluate(config, workdir)` is the entry point: it builds the data
set and model, resumes from the newest checkpoint in ``workdir/checkpoints``
(if any), trains to ``num_train_steps`` with a pmapped `train_step`, then
evaluates the frozen encoder (linear probe, kNN, ...) and writes
``workdir/results.json`` (`hmlc_jax.workdir` names its files and reads them
back: `workdir.load_encoder` gives users the trained encoder).

Conventions: the global batch of ``config.batch_size`` examples is split
evenly over the local devices; batch ``s`` is a pure function of
``(config.seed, s)`` and every example's augmentation of ``(config.seed, s,
its position in the global batch)``, so a run sees the same data on one or
many devices and after a resume.
"""
from __future__ import annotations

import collections
import functools
import os
import time
from typing import Any, Callable, Dict, Optional, Tuple

from absl import logging
from flax import jax_utils
import jax
import jax.numpy as jnp
import ml_collections
import optax

from hmlc_jax import checkpoints, evaluate, methods, progress, throughput, workdir as files
from hmlc_jax.data import Dataset, augment, load_dataset
from hmlc_jax.data.pipeline import batch_indices, device_batch, train_batches  # noqa: F401
from hmlc_jax.distributed import is_lead, sync
from hmlc_jax.errors import NonFiniteError
from hmlc_jax.preemption import StopSignals
from hmlc_jax.train_state import (TrainState, build_model, check_config, create_train_state,
                                  make_optimizer, total_steps, with_learning_rate)

AXIS = "batch"
THROUGHPUT_VIEWS = 16      # model inputs whose FLOPs are counted (per view) for the report
# Steps dispatched and not yet finished, at most. XLA:CPU's host devices can
# abort in a collective's rendezvous ("Termination timeout for all gather")
# when many pmapped steps with collectives are queued; 2 keeps the next
# batch's host work beside the running step (tests/in_flight_check.py).
MAX_STEPS_IN_FLIGHT = 2


class StepsInFlight:
  """Bounds the steps dispatched ahead: `add` a step's outputs after dispatching
  it; it waits for the oldest ones while more than ``limit`` are unfinished."""

  def __init__(self, limit: int = MAX_STEPS_IN_FLIGHT):
    self.limit, self.queue = limit, collections.deque()

  def add(self, outputs) -> None:
    self.queue.append(outputs)
    while len(self.queue) > self.limit:
      jax.block_until_ready(self.queue.popleft())


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
    batch: this device's ``x`` [b, ...], ``y`` [b, H], ``position`` [b], ``seed`` [].
    model, config, kind, schedule: bound with `functools.partial` before pmap.

  Returns:
    (new state, metrics averaged over devices).
  """
  keys = augment.example_keys(batch["seed"], state.step, batch["position"], config.num_views)
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
  grad_norm = optax.tree_utils.tree_norm(grads)
  if config.inject_nonfinite_at_step >= 0:     # test hook: a non-finite step on purpose
    grad_norm = jnp.where(state.step + 1 == config.inject_nonfinite_at_step, jnp.nan, grad_norm)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  learning_rate = schedule(state.step)          # by step: skipped steps move it on too
  updated = with_learning_rate(state, learning_rate).apply_gradients(
      grads=grads, batch_stats=batch_stats, last_loss=loss)
  state = keep_finite(finite, updated, state)
  metrics = dict(metrics, loss=loss, grad_norm=grad_norm, learning_rate=learning_rate)
  return state, jax.lax.pmean(metrics, AXIS)


def keep_finite(finite: jnp.ndarray, updated: TrainState, state: TrainState) -> TrainState:
  """``updated`` when the step was finite, else ``state`` one step on with the skip counted.

  A non-finite update never enters the state; ``nan_policy`` decides on the
  host whether training goes on.
  """
  kept = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated,
                      state.replace(step=updated.step))
  run = jnp.where(finite, 0, state.skip_run + 1)
  return kept.replace(
      skips=state.skips + (~finite).astype(jnp.int32), skip_run=run,
      longest_skip_run=jnp.maximum(state.longest_skip_run, run),
      first_skip_step=jnp.where((state.first_skip_step < 0) & ~finite, updated.step,
                                state.first_skip_step))


def pmapped_train_step(model, config: ml_collections.ConfigDict, kind: str, schedule):
  step = functools.partial(train_step, model=model, config=config, kind=kind,
                           schedule=schedule)
  return jax.pmap(step, axis_name=AXIS, donate_argnums=(0,))


# ----------------------------------------------------------------------------
# The run


def train(config: ml_collections.ConfigDict, workdir: str, data: Dataset,
          stop: Optional[StopSignals] = None) -> Dict[str, Any]:
  """Trains (resuming if possible) and returns the final state and run statistics.

  When ``stop`` has received a signal, the run ends after the current step
  with a checkpoint there, and the result has ``stopped_by`` (the signal).
  """
  num_steps = total_steps(config, len(data.train_x))
  model = build_model(config, data, axis_name=AXIS)
  sample = augment.prepare_eval(data.train_x[:1], data.kind)
  state = create_train_state(config, model, sample, len(data.train_x))
  manager = files.checkpoint_manager(workdir, config.keep_checkpoints)
  state = files.restore_newest(workdir, manager, state)
  start = int(state.step)
  if start:
    logging.warning("resuming from the checkpoint at step %d", start)
  _, schedule = make_optimizer(config, num_steps, len(data.train_x))
  p_step = pmapped_train_step(model, config, data.kind, schedule)
  lead = is_lead()
  logdir = files.path(workdir, files.TENSORBOARD) if lead and config.tensorboard else None
  writer = progress.create_writer(logdir, console=lead and config.log_to_console)
  bar = progress.progress_bar(num_steps, start, enabled=lead and config.progress_bar)
  replicated, stopped_by, done = replicate(state), None, start
  metrics, timed_from, t0, logged = None, None, time.perf_counter(), {}
  matmul, in_flight = None, StepsInFlight()
  batches = train_batches(data, config, start, num_steps)
  try:
    for step in range(start, num_steps):
      replicated, metrics = p_step(replicated, next(batches))
      in_flight.add(metrics)
      done = step + 1
      if done == start + 1:               # the first step includes compilation
        jax.block_until_ready(metrics)
        if config.throughput:             # the CPU's reference rate, before the timed steps
          matmul = throughput.measure_reference()
        timed_from, t0 = done, time.perf_counter()
      stopped_by = stop.poll(done, config.log_every_steps) if stop else None
      if done % config.log_every_steps == 0 or done == num_steps:
        scalars = jax.device_get(jax_utils.unreplicate(metrics))
        writer.write_scalars(done, scalars)
        logged = dict({k: float(v) for k, v in scalars.items()}, step=done)
        bar.set_postfix(loss=f"{float(scalars['loss']):.4f}", refresh=False)
      if done % config.checkpoint_every_steps == 0 or done == num_steps or stopped_by:
        check_skips(replicated, config, done, manager)
        checkpoints.save_finite(manager, jax_utils.unreplicate(replicated))
      elif done % config.log_every_steps == 0:
        check_skips(replicated, config, done, manager)
      bar.update(1)
      if stopped_by:
        break
    jax.block_until_ready(replicated)
    elapsed = time.perf_counter() - t0
  finally:                             # also on errors: let orbax finish writing
    bar.close()
    manager.wait_until_finished()
    writer.close()
    manager.close()
  if matmul is not None:        # and after them, once the last checkpoint is written
    throughput.measure_reference(matmul)
  state = jax_utils.unreplicate(replicated)
  timed = done - timed_from if timed_from is not None else 0
  examples_per_sec = (timed * config.batch_size / elapsed) if timed else None
  plain = build_model(config, data)
  speed = None
  if config.throughput and examples_per_sec:
    views = augment.prepare_eval(data.train_x[:THROUGHPUT_VIEWS], data.kind)
    flops = throughput.model_flops_per_view(
        plain, {"params": state.params, "batch_stats": state.batch_stats}, views)
    speed = throughput.summarise(examples_per_sec, config.num_views, flops, matmul,
                                 jax.devices(), jax.process_count())
  return {"state": state, "model": plain, "steps": done,
          "train_loss": float(state.last_loss), "skipped_steps": int(state.skips),
          "stopped_by": stopped_by, "last_logged": logged,
          "examples_per_sec": examples_per_sec, "throughput": speed}


def check_skips(replicated: TrainState, config: ml_collections.ConfigDict, step: int,
                manager) -> None:
  """NonFiniteError when the rejected non-finite updates so far break ``nan_policy``."""
  skips, longest, first = (int(jax.device_get(x[0])) for x in (
      replicated.skips, replicated.longest_skip_run, replicated.first_skip_step))
  last = f"last good checkpoint: step {manager.latest_step()}"
  if config.nan_policy == "stop" and skips:
    raise NonFiniteError(f"non-finite loss or gradient at step {first} (not applied); "
                         f"stopped by nan_policy=stop; {last}")
  if longest >= config.max_skips:
    raise NonFiniteError(f"{longest} non-finite steps in a row by step {step} "
                         f"(nan_policy=skip, max_skips={config.max_skips}); {last}")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       overwrite: bool = False) -> Dict[str, Any]:
  """Trains (or resumes), evaluates the frozen encoder and writes ``results.json``.

  SIGTERM or SIGINT ends training after the current step with a checkpoint
  there; the result is then ``{"stopped_by": signal, "steps": step}`` and
  nothing is evaluated. A workdir trained with an incompatible config is a
  UserInputError unless ``overwrite`` (which clears it first).

  Returns:
    the results dict (also written to ``workdir/results.json``).
  """
  wall_start = time.perf_counter()
  data = load_dataset(config.dataset)
  check_config(config, data.num_levels)
  build_model(config, data)             # validates config.model before anything is written
  lead = is_lead()
  if overwrite:
    if lead:
      files.clear(workdir)
    sync("workdir cleared")
  files.check_resumable(workdir, config)
  if lead:
    os.makedirs(workdir, exist_ok=True)
    files.write_json(files.path(workdir, files.CONFIG), config.to_dict())
    files.write_json(files.path(workdir, files.DATA_SPEC), files.data_spec(data))
  sync("workdir ready")
  with StopSignals() as stop:
    run = train(config, workdir, data, stop)
  if run["stopped_by"]:
    return {"stopped_by": run["stopped_by"], "steps": run["steps"]}
  variables = {"params": run["state"].params, "batch_stats": run["state"].batch_stats}
  scores = evaluate.evaluate_encoder(run["model"], variables, data, config.eval, config.seed)
  results = dict(scores, train_loss=run["train_loss"], steps=run["steps"],
                 skipped_steps=run["skipped_steps"], examples_per_sec=run["examples_per_sec"],
                 throughput=run["throughput"],
                 last_logged=run["last_logged"],
                 wall_seconds=time.perf_counter() - wall_start,
                 level_names=list(data.level_names), eval_split=files.eval_split(config),
                 config=config.to_dict())
  if lead:
    files.write_json(files.path(workdir, files.RESULTS), results)
  return results
