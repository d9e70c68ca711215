"""Orbax checkpoints: save only finite states, restore the newest readable one.

A folder of ``<step>/`` checkpoints (the ``keep_checkpoints`` newest); a
checkpoint that fails to restore is moved into a second folder rather than
deleted, so orbax's clean-up of old checkpoints never removes a readable one
in its favour. Which folders a workdir uses: `hmlc_jax.workdir`.
"""
from __future__ import annotations

import os
import shutil
import sys

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from hmlc_jax.errors import NonFiniteError


def manager_for(folder: str, keep: int) -> ocp.CheckpointManager:
  """Orbax manager of ``folder`` keeping the ``keep`` newest steps."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(folder), options=options)


def restore_newest_readable(manager: ocp.CheckpointManager, state, set_aside: str):
  """``state`` filled from the newest checkpoint that restores (as host arrays), or
  ``state`` itself when none does.

  A checkpoint that fails to restore (truncated, corrupted) gets a one-line
  warning on stderr and is moved into the folder ``set_aside``.
  """
  target = jax.device_get(state)        # host arrays: the same on every process
  manager.reload()                        # what is on disk now
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      return manager.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as e:   # orbax raises many types for damaged files
      moved = move_aside(manager, step, set_aside)
      print(f"warning: the checkpoint at step {step} cannot be read ({type(e).__name__}); "
            f"moved to {moved}, trying the previous one", file=sys.stderr, flush=True)
  return state


def move_aside(manager: ocp.CheckpointManager, step: int, set_aside: str) -> str:
  """Moves checkpoint ``step`` to ``set_aside/<step>``; returns the path."""
  source = os.path.join(str(manager.directory), str(step))
  os.makedirs(set_aside, exist_ok=True)
  target = os.path.join(set_aside, str(step))
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
