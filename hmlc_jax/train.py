"""A run from config to ``results.json``, in one pass: data, model and state,
step, loop, evaluation.

`train_and_evaluate(config, workdir)` is the entry point. Each stage is built
once, in order, by its own module:

1. the data set (`hmlc_jax.data.load_dataset`) and its batch stream
   (`hmlc_jax.data.pipeline.train_batches`, in memory or streamed);
2. the model, optimiser and initial state (`hmlc_jax.train_state.setup`),
   resumed from the newest checkpoint in ``workdir/checkpoints`` if any
   (`hmlc_jax.workdir`, which first checks or clears the workdir);
3. the pmapped step (`hmlc_jax.step`);
4. the loop (`hmlc_jax.loop.run`: logging, checkpoints, stop signals,
   evaluations every ``eval.every_steps`` into ``workdir/evaluations.json``),
   from the step the workdir's checkpoints reached (`workdir.resume`);
5. the evaluation of the frozen encoder (`hmlc_jax.evaluate`: linear probe,
   kNN, hierarchical metrics, ...) written to ``workdir/results.json``
   (`hmlc_jax.workdir` names a workdir's files and reads them back).

Conventions: the global batch of ``config.batch_size`` examples is split
evenly over the local devices; batch ``s`` is a pure function of
``(config.seed, s)`` and every example's augmentation of ``(config.seed, s,
its position in the global batch)``, so a run sees the same data on one or
many devices and after a resume.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional

import os

import jax
import ml_collections

from hmlc_jax import evaluate, loop, step, throughput, train_state, workdir as files
from hmlc_jax.data import Dataset, augment, load_dataset
from hmlc_jax.data.pipeline import train_batches
from hmlc_jax.distributed import is_lead

THROUGHPUT_VIEWS = 16      # model inputs whose FLOPs are counted (per view) for the report


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
  train_state.check_config(config, data)          # before anything is written or compiled
  files.prepare(workdir, config, data, overwrite=overwrite)
  run = train_state.setup(config, data, axis_name=step.AXIS)
  state, manager = files.resume(workdir, config, run.state)
  batches = train_batches(data, config, int(state.step), run.num_steps)
  p_step = step.pmapped_train_step(run.model, config, data.kind, run.schedule)
  done = loop.run(p_step, state, batches, config=config, num_steps=run.num_steps,
                  manager=manager, logdir=os.path.join(workdir, files.TENSORBOARD),
                  evaluate_at=evaluations(config, workdir, run.eval_model, data))
  if done.stopped_by:
    return {"stopped_by": done.stopped_by, "steps": done.steps}
  scores = evaluate.evaluate_encoder(run.eval_model, variables_of(done.state), data,
                                     config.eval, config.seed)
  results = dict(scores, train_loss=float(done.state.last_loss), steps=done.steps,
                 skipped_steps=int(done.state.skips), examples_per_sec=done.examples_per_sec,
                 throughput=throughput_summary(config, run.eval_model, done, data),
                 last_logged=done.last_logged,
                 wall_seconds=time.perf_counter() - wall_start,
                 level_names=list(data.level_names), eval_split=files.eval_split(config),
                 config=config.to_dict())
  if is_lead():
    files.write_json(files.path(workdir, files.RESULTS), results)
  return results


def variables_of(state) -> Dict[str, Any]:
  return {"params": state.params, "batch_stats": state.batch_stats}


def evaluations(config: ml_collections.ConfigDict, workdir: str, model, data: Dataset):
  """The loop's ``evaluate_at`` for ``eval.every_steps`` (None when 0): evaluates the
  encoder at a step, adds the scores to ``workdir/evaluations.json`` (a list
  by step, kept across resumes) and returns per-level accuracies to log."""
  if not config.eval.get("every_steps", 0):
    return None

  def evaluate_at(done: int, state) -> Dict[str, float]:
    scores = evaluate.evaluate_encoder(model, variables_of(state), data, config.eval,
                                       config.seed)
    if is_lead():
      files.add_evaluation(workdir, dict(scores, step=done, train_loss=float(state.last_loss)))
    return {f"eval/{name}/{h}": float(value)
            for name in ("linear_probe_accuracy", "knn_accuracy")
            for h, value in enumerate(scores[name])}

  return evaluate_at


def throughput_summary(config: ml_collections.ConfigDict, model, done: loop.LoopResult,
                       data: Dataset) -> Optional[Dict[str, Any]]:
  """`throughput.summarise` of the loop's timed steps (``config.throughput``)."""
  if not (config.throughput and done.examples_per_sec):
    return None
  views = augment.prepare_eval(data.train_x[:THROUGHPUT_VIEWS], data.kind)
  flops = throughput.model_flops_per_view(model, variables_of(done.state), views)
  return throughput.summarise(done.examples_per_sec, config.num_views, flops, done.matmul,
                              jax.devices(), jax.process_count())
