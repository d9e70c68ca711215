"""Checkpoints of a training workdir: save only finite states, resume from the
newest readable one, refuse to resume under an incompatible config.

Layout: ``workdir/checkpoints/<step>/`` (orbax, ``keep_checkpoints`` newest),
``workdir/config.json`` (the config of the run that wrote them) and
``workdir/unreadable_checkpoints/<step>/`` (a checkpoint that failed to
restore, moved aside rather than deleted, so orbax's clean-up of old
checkpoints never removes a readable one in its favour).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

from hmlc_jax import workdir as files
from hmlc_jax.errors import NonFiniteError, UserInputError

# Fields whose change makes the saved state unusable or the run a different one.
RESUME_FIELDS = ("method", "model", "dataset.name", "dataset.level_order", "batch_size",
                 "num_views", "optimizer")


def manager_for(workdir: str, keep: int) -> ocp.CheckpointManager:
  """Orbax manager of ``workdir/checkpoints`` keeping the ``keep`` newest steps."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(files.path(os.path.abspath(workdir), files.CHECKPOINTS),
                               options=options)


def restore_newest_readable(manager: ocp.CheckpointManager, state):
  """``state`` filled from the newest checkpoint that restores (as host arrays), or
  ``state`` itself when none does.

  A checkpoint that fails to restore (truncated, corrupted) gets a one-line
  warning on stderr and is moved to ``unreadable_checkpoints/``.
  """
  target = jax.device_get(state)        # host arrays: the same on every process
  manager.reload()                        # what is on disk now
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      return manager.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as e:   # orbax raises many types for damaged files
      moved = move_aside(manager, step)
      print(f"warning: the checkpoint at step {step} cannot be read ({type(e).__name__}); "
            f"moved to {moved}, trying the previous one", file=sys.stderr, flush=True)
  return state


def move_aside(manager: ocp.CheckpointManager, step: int) -> str:
  """Moves checkpoint ``step`` to ``../unreadable_checkpoints/<step>``; returns the path."""
  source = os.path.join(str(manager.directory), str(step))
  target_dir = os.path.join(os.path.dirname(str(manager.directory)), files.UNREADABLE_CHECKPOINTS)
  os.makedirs(target_dir, exist_ok=True)
  target = os.path.join(target_dir, str(step))
  if os.path.exists(target):
    shutil.rmtree(target)
  shutil.move(source, target)
  manager.reload()
  return target


def save_finite(manager: ocp.CheckpointManager, state) -> None:
  """Saves ``state`` at its step after checking every float in it is finite."""
  saved = (state.params, state.batch_stats, state.opt_state, state.last_loss)
  if not all_finite(saved):
    raise NonFiniteError(f"non-finite values in the train state at step {int(state.step)}; "
                         f"not saved (last checkpoint: step {manager.latest_step()})")
  # Host (NumPy) arrays: in a multi-process run process 0 writes them, once.
  manager.save(int(state.step), args=ocp.args.StandardSave(jax.device_get(state)))


@jax.jit
def _all_finite(tree) -> jnp.ndarray:
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def all_finite(tree) -> bool:
  return bool(_all_finite(tree))


# ----------------------------------------------------------------------------
# The config a workdir was trained with


def field(config: Dict[str, Any], dotted: str) -> Optional[Any]:
  node = config
  for name in dotted.split("."):
    node = node.get(name) if isinstance(node, dict) else None
  return node


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """UserInputError when ``workdir`` holds checkpoints from a config that differs
  from ``config`` in a `RESUME_FIELDS` field (resuming would fail or mix runs)."""
  path = files.path(workdir, files.CONFIG)
  folder = files.path(workdir, files.CHECKPOINTS)
  has_checkpoints = os.path.isdir(folder) and os.listdir(folder)
  if not (has_checkpoints and os.path.exists(path)):
    return
  with open(path) as f:
    saved = json.load(f)
  new = config.to_dict()
  for name in RESUME_FIELDS:
    before, now = field(saved, name), field(new, name)
    if before != now:
      raise UserInputError(
          f"{workdir} was trained with {name}={_short(before)}, this config has "
          f"{_short(now)}; use another --workdir, or --overwrite to start it afresh")


def _short(value) -> str:
  text = json.dumps(value, sort_keys=True)
  return text if len(text) <= 60 else text[:57] + "..."


def clear(workdir: str) -> None:
  """Removes what a previous run left in ``workdir`` (``--overwrite``)."""
  for name in files.RUN_FOLDERS:
    shutil.rmtree(files.path(workdir, name), ignore_errors=True)
  for name in files.RUN_FILES + (files.LEVELS, files.TSNE):
    if os.path.exists(files.path(workdir, name)):
      os.remove(files.path(workdir, name))
