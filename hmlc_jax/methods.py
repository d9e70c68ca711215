"""Training objectives: the table of methods, and the loss a `config.method` applies.

A method is one entry of `METHODS`: its loss on the projection head's outputs
(and, for A-HMLC, the attention heads' masks) and whether the model needs
per-level attention heads. The training step, the config checks, the demo and
the command-line help all read this table, so a new loss is one function in
`hmlc_jax.losses` plus one entry here.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Tuple

import jax.numpy as jnp
import ml_collections

from hmlc_jax import hierarchy, losses
from hmlc_jax.errors import UserInputError
from hmlc_jax.gmm import GMMConfig

# loss(config, embeddings [b, V, D], masks [b, V, H, D] or None, labels [b, H],
#      common keyword arguments) -> (scalar loss, aux dict as the loss returns it)
LossFn = Callable[..., Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]]


@dataclasses.dataclass(frozen=True)
class Method:
  summary: str                    # one line, for help strings and the docs
  loss: LossFn
  attention_heads: bool = False   # the model grows one attention head per level


def _unit(embeddings):
  return losses.l2_normalize(embeddings)[0]


def _simclr(config, embeddings, masks, labels, common):
  return losses.supcon_loss(_unit(embeddings), None, **common), {}


def _supcon(config, embeddings, masks, labels, common):
  return losses.supcon_loss(_unit(embeddings), labels[:, -1], **common), {}


def _hmlc(kind: str) -> LossFn:
  def loss(config, embeddings, masks, labels, common):
    return losses.hmlc_loss(_unit(embeddings), labels, kind=kind,
                            layer_penalty=config.layer_penalty, **common), {}
  return loss


def _masked(config, common):
  return dict(level_weights=_level_weights(config), full_weight=config.full_weight,
              instance_weight=config.instance_weight,
              enforce_hierarchy=config.enforce_hierarchy, return_aux=True, **common)


def _ghmlc(config, embeddings, masks, labels, common):
  return losses.ghmlc_loss(embeddings, labels, gmm=GMMConfig(**config.gmm),
                           **_masked(config, common))


def _ahmlc(config, embeddings, masks, labels, common):
  return losses.ahmlc_loss(embeddings, masks, labels, **_masked(config, common))


METHODS: Dict[str, Method] = {
    "simclr": Method("instance contrast, no labels (Chen et al. 2020)", _simclr),
    "supcon": Method("supervised contrast on the finest level (Khosla et al. 2020)", _supcon),
    "hmc": Method("hierarchical multi-label contrast (Zhang et al. 2022)", _hmlc("hmc")),
    "hce": Method("hierarchy-constrained contrast (Zhang et al. 2022)", _hmlc("hce")),
    "hmce": Method("HMC with the HCE constraint (Zhang et al. 2022)", _hmlc("hmce")),
    "ghmlc": Method("per-level SupCon on features grouped by an in-graph GMM", _ghmlc),
    "ahmlc": Method("per-level SupCon on attention-masked features", _ahmlc,
                    attention_heads=True),
}
METHOD_NAMES = " | ".join(METHODS)


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
  return METHODS[method].attention_heads


def _level_weights(config):
  weights = config.level_weights
  return weights if isinstance(weights, str) else tuple(weights)


def loss_and_aux(config: ml_collections.ConfigDict, embeddings: jnp.ndarray,
                 masks: Optional[jnp.ndarray], labels: jnp.ndarray,
                 axis_name: Optional[str] = None) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """``config.method``'s loss and its aux dict as `hmlc_jax.losses` returns it
  (arguments as `method_loss`)."""
  common = dict(temperature=config.temperature, base_temperature=config.base_temperature,
                axis_name=axis_name, block_rows=config.loss_block_rows or None)
  return METHODS[config.method].loss(config, embeddings, masks, labels, common)


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
  loss, aux = loss_and_aux(config, embeddings, masks, labels, axis_name)
  return loss, flatten_aux(aux) if aux else {}


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
