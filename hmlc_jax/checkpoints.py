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
import numpy as np
import orbax.checkpoint as ocp

from hmlc_jax import distributed
from hmlc_jax.errors import NonFiniteError


def manager_for(folder: str, keep: int) -> ocp.CheckpointManager:
  """Orbax manager of ``folder`` keeping the ``keep`` newest steps."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(folder), options=options)


def restore_newest_readable(manager: ocp.CheckpointManager, state, set_aside: str):
  """``state`` filled from the newest checkpoint that restores (as host arrays), or
  ``state`` itself when none does.

  A checkpoint that fails to restore (truncated, corrupted) gets a one-line
  warning on stderr and is moved into the folder ``set_aside``. In a
  multi-process run every process tries each checkpoint, then process 0 alone
  moves a damaged one while the others wait.
  """
  target = jax.device_get(state)        # host arrays: the same on every process
  manager.reload()                        # what is on disk now
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      restored, error = manager.restore(step, args=ocp.args.StandardRestore(target)), None
    except Exception as e:   # orbax raises many types for damaged files
      restored, error = None, e
    distributed.sync(f"checkpoint {step} tried")
    if error is None:
      return restored

    def set_aside_once(step=step, error=error):
      moved = move_aside(manager, step, set_aside)
      print(f"warning: the checkpoint at step {step} cannot be read ({type(error).__name__}); "
            f"moved to {moved}, trying the previous one", file=sys.stderr, flush=True)
    distributed.lead_first(f"setting aside the checkpoint at step {step}", set_aside_once)
    manager.reload()
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
  # Host (NumPy) arrays: in a multi-process run process 0 writes them, once.
  # The check runs on them too: no compiled program (one for ResNet-18's
  # hundreds of leaves took 1.9 s to compile), and the copy is needed anyway.
  host = jax.device_get(state)
  if not all_finite((host.params, host.batch_stats, host.opt_state, host.last_loss)):
    raise NonFiniteError(f"non-finite values in the train state at step {int(host.step)}; "
                         f"not saved (last checkpoint: step {manager.latest_step()})")
  manager.save(int(host.step), args=ocp.args.StandardSave(host))


def all_finite(tree) -> bool:
  """Whether every floating-point value in ``tree`` (NumPy or jax arrays) is finite."""
  return all(np.isfinite(x).all() for x in jax.tree.leaves(tree)
             if jnp.issubdtype(np.asarray(x).dtype, jnp.inexact))
