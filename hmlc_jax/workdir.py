"""A training workdir's files: their names, JSON in and out, and what is printed.

    WORKDIR/config.json            the config the run was trained with
    WORKDIR/data_spec.json         what `train.load_encoder` needs of the data
    WORKDIR/checkpoints/           orbax checkpoints (`hmlc_jax.checkpoints`)
    WORKDIR/unreadable_checkpoints/  checkpoints that failed to restore, set aside
    WORKDIR/tensorboard/           the scalars of every logged step
    WORKDIR/results.json           scores (`train.train_and_evaluate`, ``--mode=eval``)
    WORKDIR/levels.json            ``--mode=levels`` (`analysis.levels_workdir`)
    WORKDIR/tsne.png               ``--mode=tsne`` (`analysis.tsne_workdir`)

Every module names these files through this one (nothing here imports the
rest of the package).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict

from hmlc_jax.errors import UserInputError

CONFIG = "config.json"
DATA_SPEC = "data_spec.json"
RESULTS = "results.json"
LEVELS = "levels.json"
TSNE = "tsne.png"
CHECKPOINTS = "checkpoints"
UNREADABLE_CHECKPOINTS = "unreadable_checkpoints"
TENSORBOARD = "tensorboard"
RUN_FILES = (RESULTS, CONFIG, DATA_SPEC)       # what --overwrite removes, with the folders
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


def data_spec(data) -> Dict[str, Any]:
  """What `train.load_encoder` needs to know of a `Dataset` without loading it."""
  return {"name": data.name, "kind": data.kind, "num_levels": data.num_levels,
          "num_train": len(data.train_x), "input_shape": list(data.train_x.shape[1:]),
          "input_dtype": str(data.train_x.dtype), "num_classes": list(data.num_classes),
          "level_names": list(data.level_names)}


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
