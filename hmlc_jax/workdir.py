"""A training workdir: its files, the checks before resuming into it, and what
is read back out of it (the trained state, the encoder, scores, figures).

    WORKDIR/config.json            the config the run was trained with
    WORKDIR/data_spec.json         what `load_encoder` needs of the data
    WORKDIR/checkpoints/           orbax checkpoints (`hmlc_jax.checkpoints`)
    WORKDIR/unreadable_checkpoints/  checkpoints that failed to restore, set aside
    WORKDIR/tensorboard/           the scalars of every logged step
    WORKDIR/results.json           scores (`train.train_and_evaluate`, `evaluate_workdir`)
    WORKDIR/evaluations.json       scores during training, by step (``eval.every_steps``)
    WORKDIR/levels.json            ``--mode=levels`` (`levels_workdir`)
    WORKDIR/tsne.png               ``--mode=tsne`` (`tsne_workdir`)

Every module names these files through this one. `hmlc_jax.train` writes a
workdir; the functions at the end read a trained one. Importing this module
imports no jax (the sweeps name files before they split the CPU into
devices); the functions that need jax import it.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable, Dict, Optional

import ml_collections
import numpy as np

from hmlc_jax.errors import UserInputError

CONFIG = "config.json"
DATA_SPEC = "data_spec.json"
RESULTS = "results.json"
EVALUATIONS = "evaluations.json"
LEVELS = "levels.json"
TSNE = "tsne.png"
CHECKPOINTS = "checkpoints"
UNREADABLE_CHECKPOINTS = "unreadable_checkpoints"
TENSORBOARD = "tensorboard"
RUN_FILES = (RESULTS, EVALUATIONS, CONFIG, DATA_SPEC)      # what --overwrite removes, with the folders
RUN_FOLDERS = (CHECKPOINTS, UNREADABLE_CHECKPOINTS, TENSORBOARD)


def path(workdir: str, name: str) -> str:
  return os.path.join(workdir, name)


def read_json(workdir: str, name: str) -> Dict[str, Any]:
  """``workdir/name`` parsed, or UserInputError when it is missing."""
  file = path(workdir, name)
  if not os.path.exists(file):
    raise UserInputError(f"{file} not found: is {workdir} a training workdir?")
  with open(file) as f:
    return json.load(f)


def write_json(file: str, payload: Dict[str, Any]) -> None:
  """Writes atomically (temporary file, then rename)."""
  tmp = file + ".tmp"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  os.replace(tmp, file)


def add_evaluation(workdir: str, record: Dict[str, Any]) -> None:
  """Adds one evaluation during training (``record["step"]``) to
  ``evaluations.json``, replacing an earlier one at that step (a resumed run)."""
  file = path(workdir, EVALUATIONS)
  records = read_json(workdir, EVALUATIONS)["evaluations"] if os.path.exists(file) else []
  records = [r for r in records if r["step"] != record["step"]] + [record]
  write_json(file, {"evaluations": sorted(records, key=lambda r: r["step"])})


def class_counts(labels: np.ndarray, num_classes) -> list:
  """Examples per class, per level: ``[[n_0, n_1, ...], ...]`` coarsest first."""
  return [np.bincount(labels[:, h], minlength=n).tolist() for h, n in enumerate(num_classes)]


def data_spec(data) -> Dict[str, Any]:
  """What `load_encoder` needs to know of a `Dataset` without loading it."""
  return {"name": data.name, "kind": data.kind, "num_levels": data.num_levels,
          "num_train": len(data.train_x), "input_shape": list(data.train_x.shape[1:]),
          "input_dtype": str(data.train_x.dtype), "num_classes": list(data.num_classes),
          "level_names": list(data.level_names),
          "class_names": [list(names) for names in data.class_names],
          "train_class_counts": class_counts(data.train_y, data.num_classes),
          "test_class_counts": class_counts(data.test_y, data.num_classes)}


def summary(results: Dict[str, Any], workdir: str) -> str:
  """A few lines for the console: accuracies per level and where the results are."""
  names = results.get("level_names") or [str(h) for h in
                                          range(len(results["linear_probe_accuracy"]))]
  per_level = lambda key: ", ".join(f"{n} {100 * a:.2f}%" for n, a in zip(names, results[key]))
  return "\n".join([
      f"scores on the {results.get('eval_split', 'test')} split",
      f"linear probe: {per_level('linear_probe_accuracy')}",
      f"kNN:          {per_level('knn_accuracy')}",
      f"hierarchical consistency {results['hierarchical_consistency']:.4f}, "
      f"embedding variance {results['embedding_variance']:.4f}, "
      f"train loss {results['train_loss']:.4f} after {results['steps']} steps",
      f"results: {path(workdir, RESULTS)}"])


# ----------------------------------------------------------------------------
# Checkpoints and resuming

# The config fields a resumed run may change: how long it trains (the schedule
# then follows the new total from the resume on), how often it saves and logs,
# how it is evaluated, where its data lies. Every other field shapes the
# trajectory, and a resume that changes one is refused.
RESUMABLE_FIELDS = ("num_train_steps", "num_epochs", "checkpoint_every_steps",
                    "keep_checkpoints", "log_every_steps", "log_to_console", "progress_bar",
                    "tensorboard", "throughput", "nan_policy", "max_skips", "eval",
                    "dataset.data_dir", "dataset.download", "dataset.eval_split",
                    "dataset.stream", "dataset.stream_threads", "dataset.prefetch")
# What evaluating a workdir must share with its training: the method, the model
# and the data (less the RESUMABLE_FIELDS among them).
EVALUATE_FIELDS = ("method", "model", "dataset")


def prepare(workdir: str, config: ml_collections.ConfigDict, data, overwrite: bool) -> None:
  """Clears ``workdir`` (``overwrite``) or checks that it may be resumed with
  ``config`` (`check_resumable`), then writes its ``config.json`` and
  ``data_spec.json``; in a multi-process run process 0 writes, all wait."""
  from hmlc_jax.distributed import is_lead, sync
  lead = is_lead()
  if overwrite:
    if lead:
      clear(workdir)
    sync("workdir cleared")
  check_resumable(workdir, config)
  if lead:
    os.makedirs(workdir, exist_ok=True)
    write_json(path(workdir, CONFIG), config.to_dict())
    write_json(path(workdir, DATA_SPEC), data_spec(data))
  sync("workdir ready")


def resume(workdir: str, config: ml_collections.ConfigDict, state):
  """``(state, manager)``: the newest readable checkpoint of ``workdir`` (else
  ``state`` as given) and the checkpoint manager that will save the run's."""
  from absl import logging
  manager = checkpoint_manager(workdir, config.keep_checkpoints)
  restored = restore_newest(workdir, manager, state)
  if int(restored.step):
    logging.warning("resuming from the checkpoint at step %d", int(restored.step))
  return restored, manager


def checkpoint_manager(workdir: str, keep: int):
  """Orbax manager of ``workdir/checkpoints`` keeping the ``keep`` newest steps."""
  from hmlc_jax import checkpoints
  return checkpoints.manager_for(path(workdir, CHECKPOINTS), keep)


def restore_newest(workdir: str, manager, state):
  """`checkpoints.restore_newest_readable`, unreadable ones set aside in this workdir."""
  from hmlc_jax import checkpoints
  return checkpoints.restore_newest_readable(manager, state,
                                             path(os.path.abspath(workdir), UNREADABLE_CHECKPOINTS))


def field(config: Dict[str, Any], dotted: str) -> Optional[Any]:
  node = config
  for name in dotted.split("."):
    node = node.get(name) if isinstance(node, dict) else None
  return node


def check_resumable(workdir: str, config: ml_collections.ConfigDict,
                    action: str = "resume") -> None:
  """UserInputError when ``workdir`` holds checkpoints from a config that differs
  from ``config`` in a field outside `RESUMABLE_FIELDS`: resuming would mix two
  runs. With ``action="evaluate"`` only `EVALUATE_FIELDS` are compared: a
  workdir scored under another method, model or data set would be mislabelled."""
  saved_config, folder = path(workdir, CONFIG), path(workdir, CHECKPOINTS)
  has_checkpoints = os.path.isdir(folder) and os.listdir(folder)
  if not (has_checkpoints and os.path.exists(saved_config)):
    return
  with open(saved_config) as f:
    saved = _flatten(json.load(f))
  new = _flatten(config.to_dict())
  within = lambda name, fields: any(name == f or name.startswith(f + ".") for f in fields)
  changed = [name for name in sorted(set(saved) | set(new))
             if saved.get(name, _MISSING) != new.get(name, _MISSING)
             and not within(name, RESUMABLE_FIELDS)
             and (action == "resume" or within(name, EVALUATE_FIELDS))]
  if changed:
    name = changed[0]
    more = f" (and {len(changed) - 1} more: {', '.join(changed[1:4])})" if len(changed) > 1 else ""
    fix = ("use another --workdir, or --overwrite to start it afresh" if action == "resume"
           else "pass the config it was trained with")
    raise UserInputError(
        f"cannot {action} {workdir}: it was trained with "
        f"{name}={_short(saved.get(name, _MISSING), 'not in its config.json')}, this config has "
        f"{_short(new.get(name, _MISSING))}{more}; {fix}")


_MISSING = object()


def _flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
  """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and tuples compare as lists."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = list(value) if isinstance(value, tuple) else value
  return out


def _short(value, missing: str = "no such field") -> str:
  if value is _MISSING:
    return f"({missing})"
  text = json.dumps(value, sort_keys=True)
  return text if len(text) <= 60 else text[:57] + "..."


def clear(workdir: str) -> None:
  """Removes what a previous run left in ``workdir`` (``--overwrite``)."""
  for name in RUN_FOLDERS:
    shutil.rmtree(path(workdir, name), ignore_errors=True)
  for name in RUN_FILES + (LEVELS, TSNE):
    if os.path.exists(path(workdir, name)):
      os.remove(path(workdir, name))


# ----------------------------------------------------------------------------
# Reading a trained workdir


def restore_trained(workdir: str, config: ml_collections.ConfigDict, model,
                    sample_input: np.ndarray, num_train: int):
  """The newest readable checkpoint of ``workdir``; UserInputError when there is none."""
  from hmlc_jax import train_state
  if not os.path.isdir(path(workdir, CHECKPOINTS)):
    raise UserInputError(f"no checkpoint under {workdir}/checkpoints; train first "
                         f"(--mode=train)")
  manager = checkpoint_manager(workdir, config.keep_checkpoints)
  fresh = train_state.create_train_state(config, model, sample_input, num_train)
  state = restore_newest(workdir, manager, fresh)
  manager.close()
  if state is fresh:
    raise UserInputError(f"no readable checkpoint under {workdir}/checkpoints; train first "
                         f"(--mode=train)")
  return state


def eval_split(config: ml_collections.ConfigDict) -> str:
  """The split the scores are measured on: "test" or "validation"."""
  return config.dataset.eval_split


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Re-evaluates the newest checkpoint of ``workdir`` and updates its ``results.json``.

  ``config`` must be the one the workdir was trained with (its ``config.json``),
  up to `RESUMABLE_FIELDS` (evaluation settings among them); another method,
  model or data set is refused before anything is read or written."""
  check_resumable(workdir, config, action="evaluate")
  from hmlc_jax import evaluate, train_state
  from hmlc_jax.data import augment, load_dataset
  from hmlc_jax.distributed import is_lead
  data = load_dataset(config.dataset)
  train_state.check_config(config, data)
  model = train_state.build_model(config, data)
  state = restore_trained(workdir, config, model,
                          augment.prepare_eval(data.train_x[:1], data.kind), len(data.train_x))
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  scores = evaluate.evaluate_encoder(model, variables, data, config.eval, config.seed)
  file = path(workdir, RESULTS)
  results = read_json(workdir, RESULTS) if os.path.exists(file) else {}
  results.update(scores, steps=int(state.step), train_loss=float(state.last_loss),
                 level_names=list(data.level_names), eval_split=eval_split(config),
                 config=config.to_dict())
  if is_lead():
    write_json(file, results)
  return results


def load_encoder(workdir: str) -> Callable[[Any], Dict[str, Any]]:
  """The trained encoder of ``workdir`` (newest checkpoint) as a jitted function.

  Returns:
    ``encode(inputs) -> {"representation": [N, R], "embedding": [N, D]}``
    taking raw inputs as the data set stores them (uint8 images ``[N, H, W,
    C]`` or float point clouds ``[N, P, 3]``); evaluation mode, no augmentation.
  """
  import jax
  from hmlc_jax import train_state
  from hmlc_jax.data import augment
  config, spec = (ml_collections.ConfigDict(read_json(workdir, name))
                  for name in (CONFIG, DATA_SPEC))
  model = train_state.build_model(config, spec)
  kind = spec.kind
  sample = augment.prepare_eval(np.zeros([1] + list(spec.input_shape), spec.input_dtype), kind)
  state = restore_trained(workdir, config, model, sample, spec.num_train)
  variables = {"params": state.params, "batch_stats": state.batch_stats}

  @jax.jit
  def encode(inputs):
    outputs = model.apply(variables, augment.prepare_eval(inputs, kind), train=False)
    return {k: outputs[k] for k in ("representation", "embedding")}
  return encode


def sample_test_embeddings(workdir: str, max_points: int, seed: int = 0) -> Dict[str, np.ndarray]:
  """Embeddings ``[m, D]`` and labels ``[m, H]`` of a random test subset, from the
  newest checkpoint of ``workdir`` (evaluation mode), with ``level_names``."""
  from hmlc_jax import evaluate
  from hmlc_jax.data import load_dataset
  config = ml_collections.ConfigDict(read_json(workdir, CONFIG))
  data = load_dataset(config.dataset)
  rows = evaluate.subsample(len(data.test_x), max_points, seed)
  encode = load_encoder(workdir)
  batch = config.eval.batch_size
  embeddings = np.concatenate([np.asarray(encode(data.test_x[rows[i:i + batch]])["embedding"])
                               for i in range(0, len(rows), batch)])
  return {"embeddings": embeddings, "labels": data.test_y[rows],
          "level_names": list(data.level_names), "method": config.method}


def tsne_workdir(workdir: str, max_points: int = 2000, seed: int = 0) -> str:
  """``workdir/tsne.png`` of one trained run (one column, one row per level)."""
  from hmlc_jax import analysis
  found = sample_test_embeddings(workdir, max_points, seed)
  panel = (found["method"], analysis.tsne_points(found["embeddings"], seed), found["labels"])
  return analysis.tsne_figure([panel], found["level_names"], path(workdir, TSNE))


def levels_workdir(workdir: str, max_points: int = 5000, seed: int = 0) -> Dict:
  """`analysis.feature_groups` of a trained run's test embeddings beside its label
  tree's depth; written to ``workdir/levels.json``."""
  from hmlc_jax import analysis
  found = sample_test_embeddings(workdir, max_points, seed)
  report = dict(analysis.feature_groups(found["embeddings"]), method=found["method"],
                label_depth=len(found["level_names"]), level_names=found["level_names"],
                points=len(found["embeddings"]))
  write_json(path(workdir, LEVELS), report)
  return report
