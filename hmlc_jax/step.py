"""The training step: one optimisation step on one device's share of the global
batch, run under `jax.pmap` over the local devices.

Every example's augmentation is a function of ``(seed, step, its position in
the global batch)``, so a run computes the same step on one or many devices
and after a resume. The losses return the global batch's loss on every device
and each device's share of its gradient; a non-finite update never enters
the state (`keep_finite`), and ``nan_policy`` decides on the host, in the
loop, whether training goes on.
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, Tuple

from flax import jax_utils
import jax
import jax.numpy as jnp
import ml_collections
import optax

from hmlc_jax import methods
from hmlc_jax.data import augment
from hmlc_jax.train_state import TrainState, with_learning_rate

AXIS = "batch"


def replicate(tree):
  """One copy of every leaf per local device, on a mesh named like the pmap axis, so
  the pmapped step does not compile a second time for its own outputs."""
  return jax_utils.replicate(tree, axis_name=AXIS)


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
  """`train_step` with its non-array arguments bound, pmapped over the local devices
  (the state donated)."""
  step = functools.partial(train_step, model=model, config=config, kind=kind,
                           schedule=schedule)
  return jax.pmap(step, axis_name=AXIS, donate_argnums=(0,))

