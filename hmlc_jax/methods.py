"""Training objectives: which loss a `config.method` applies to model outputs."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import jax.numpy as jnp
import ml_collections

from hmlc_jax import hierarchy, losses
from hmlc_jax.errors import UserInputError
from hmlc_jax.gmm import GMMConfig

METHODS = ("simclr", "supcon", "hmc", "hce", "hmce", "ghmlc", "ahmlc")


def check_method(config: ml_collections.ConfigDict, num_levels: int) -> None:
  """Raises UserInputError naming the first bad loss-related config field."""
  if config.method not in METHODS:
    raise UserInputError(f"unknown method {config.method!r}; choose one of {list(METHODS)}")
  for field in ("temperature", "base_temperature"):
    if not config[field] > 0:
      raise UserInputError(f"{field} must be positive, got {config[field]}")
  try:
    GMMConfig(**config.gmm)
    hierarchy.hmlc_penalties(num_levels, config.layer_penalty)
    hierarchy.level_weights(_level_weights(config), num_levels)
  except (ValueError, TypeError) as e:
    raise UserInputError(str(e)) from None


def uses_attention_heads(method: str) -> bool:
  return method == "ahmlc"


def _level_weights(config):
  weights = config.level_weights
  return weights if isinstance(weights, str) else tuple(weights)


def method_loss(config: ml_collections.ConfigDict, embeddings: jnp.ndarray,
                masks: Optional[jnp.ndarray], labels: jnp.ndarray,
                axis_name: Optional[str]) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """The training loss of ``config.method`` and its diagnostics.

  Args:
    embeddings: float32 ``[b, V, D]`` projection-head outputs (per device).
    masks: float32 ``[b, V, H, D]`` attention masks (A-HMLC) or None.
    labels: int32 ``[b, H]``, coarsest level first.
    axis_name: pmap axis: the loss is the global-batch loss on every device.

  Returns:
    (scalar loss, dict of scalar metrics: ``level_loss/h``, ``level_dims/h``,
    ``gmm_log_likelihood`` where the method has them).
  """
  common = dict(temperature=config.temperature, base_temperature=config.base_temperature,
                axis_name=axis_name, block_rows=config.get("loss_block_rows", 0) or None)
  method = config.method
  if method in ("simclr", "supcon"):
    unit = losses.l2_normalize(embeddings)[0]
    return losses.supcon_loss(unit, None if method == "simclr" else labels[:, -1],
                              **common), {}
  if method in ("hmc", "hce", "hmce"):
    unit = losses.l2_normalize(embeddings)[0]
    return losses.hmlc_loss(unit, labels, kind=method, layer_penalty=config.layer_penalty,
                            **common), {}
  masked = dict(level_weights=_level_weights(config), full_weight=config.full_weight,
                instance_weight=config.instance_weight,
                enforce_hierarchy=config.enforce_hierarchy, return_aux=True, **common)
  if method == "ghmlc":
    loss, aux = losses.ghmlc_loss(embeddings, labels, gmm=GMMConfig(**config.gmm), **masked)
  else:
    loss, aux = losses.ahmlc_loss(embeddings, masks, labels, **masked)
  return loss, flatten_aux(aux)


def flatten_aux(aux: Dict[str, jnp.ndarray]) -> Dict[str, jnp.ndarray]:
  """``{"level_losses": [H], ...}`` -> scalar metrics ``{"level_loss/0": ..., ...}``."""
  metrics = {}
  for name, key in (("level_loss", "level_losses"), ("level_dims", "level_dims")):
    for h in range(aux[key].shape[0]):
      metrics[f"{name}/{h}"] = aux[key][h]
  for name in ("gmm_log_likelihood", "gmm_components"):
    if name in aux:
      metrics[name] = aux[name]
  return metrics
