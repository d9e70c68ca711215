"""Backbones, projection head and A-HMLC attention heads as one Flax model.

    model = create_model(config.model, num_levels=3, attention_heads=True,
                         axis_name="batch")
    variables = model.init(rng, x, train=False)
    out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])

Backbones: ``resnet18`` / ``resnet50`` (CIFAR variants) and ``small_cnn`` take
images ``[B, H, W, C]``; ``pointnet`` takes point clouds ``[B, P, 3]``. Every
backbone uses BatchNorm, synchronised across ``axis_name`` in train mode.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from hmlc_jax.errors import UserInputError
from hmlc_jax.models.heads import ATTENTION_ACTIVATIONS, AttentionHeads, ProjectionHead
from hmlc_jax.models.pointnet import PointNet
from hmlc_jax.models.resnet import ResNet, resnet18, resnet50
from hmlc_jax.models.small_cnn import POOLS, SmallCNN

BACKBONES = ("resnet18", "resnet50", "small_cnn", "pointnet")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

__all__ = ["BACKBONES", "DTYPES", "AttentionHeads", "ContrastiveModel", "PointNet",
           "ProjectionHead", "ResNet", "SmallCNN", "create_model", "resnet18", "resnet50"]


class ContrastiveModel(nn.Module):
  """Backbone -> projection head (-> per-level attention masks).

  Attributes:
    backbone: module mapping inputs to ``[B, R]``; called with ``train=``.
    projection_dim: D, the embedding size.
    projection_hidden_dim: hidden width of the projection MLP; 0 means R.
    num_levels: H, the number of attention heads (used only with them).
    attention_heads: add A-HMLC masks to the output.
    attention_activation: ``"sigmoid"`` or ``"softmax"``.
    dtype: compute dtype of the heads; parameters are float32.
  """
  backbone: nn.Module
  projection_dim: int = 128
  projection_hidden_dim: int = 0
  num_levels: int = 1
  attention_heads: bool = False
  attention_activation: str = "sigmoid"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> dict[str, jnp.ndarray]:
    """Runs the model.

    Args:
      x: images float ``[B, H, W, C]`` or point clouds float ``[B, P, 3]``.
      train: batch statistics (and ``batch_stats`` updates, which need
        ``mutable=["batch_stats"]``) if True, running averages if False.

    Returns:
      ``representation`` float32 ``[B, R]``, ``embedding`` float32 ``[B, D]``
      (not normalised) and, with attention heads, ``masks`` float32
      ``[B, H, D]``.
    """
    representation = self.backbone(x, train=train).astype(jnp.float32)
    hidden = self.projection_hidden_dim or representation.shape[-1]
    embedding = ProjectionHead(hidden, self.projection_dim, self.dtype,
                               name="projection")(representation)
    out = {"representation": representation, "embedding": embedding}
    if self.attention_heads:
      out["masks"] = AttentionHeads(self.num_levels, self.attention_activation, self.dtype,
                                    name="attention")(embedding)
    return out


def create_model(model_config, *, num_levels: int, attention_heads: bool,
                 axis_name: Optional[str] = None) -> ContrastiveModel:
  """Builds the model described by ``model_config``.

  Args:
    model_config: ConfigDict with ``backbone`` (one of BACKBONES), ``width``,
      ``projection_dim`` (default 128), ``projection_hidden_dim`` (default 0:
      the representation size), ``attention_activation`` (default
      "sigmoid"), ``dtype`` ("float32" or "bfloat16", default "float32") and,
      optionally, ``zero_init_residual`` (bool, default False: ResNets start
      each residual branch's last BatchNorm scale at zero); for ``small_cnn``
      ``convs_per_stage``, ``space_to_depth`` and ``pool`` (`SmallCNN`);
      ``cpu_kernels`` (default False): the hand-written gradients that pay on
      CPU, used only when JAX's default backend is the CPU (reverse mode
      only; without them the backbones are plain Flax / lax).
    num_levels: H, hierarchy levels (one attention head each).
    attention_heads: add A-HMLC attention masks to the output.
    axis_name: pmap axis over which BatchNorm synchronises batch statistics.

  Returns:
    an unbound ContrastiveModel.

  Raises:
    UserInputError: an unknown or out-of-range field, named ``model.<field>``.
  """
  fields = _read_config(model_config)
  if attention_heads and (isinstance(num_levels, bool) or not isinstance(num_levels, int)
                          or num_levels < 1):
    raise UserInputError(f"num_levels must be a positive int for attention heads, "
                         f"got {num_levels!r}")
  cpu_kernels = fields["cpu_kernels"] and jax.default_backend() == "cpu"
  backbone = _backbone(fields["backbone"], fields["width"], fields["zero_init_residual"],
                       fields["convs_per_stage"], fields["space_to_depth"], fields["pool"],
                       axis_name, fields["dtype"], cpu_kernels)
  return ContrastiveModel(
      backbone=backbone, projection_dim=fields["projection_dim"],
      projection_hidden_dim=fields["projection_hidden_dim"], num_levels=num_levels,
      attention_heads=attention_heads, attention_activation=fields["attention_activation"],
      dtype=fields["dtype"])


def _read_config(m) -> dict[str, Any]:
  """The validated fields of the ``model`` config section (every field is in
  ``configs/common.base_config``)."""
  for name in ("zero_init_residual", "cpu_kernels"):
    if not isinstance(m.get(name, False), bool):
      raise UserInputError(f"model.{name} must be true or false; got {m.get(name)!r}")
  return {
      "backbone": _choice("backbone", m.backbone, BACKBONES),
      "width": _int_at_least("width", m.width, 1),
      "projection_dim": _int_at_least("projection_dim", m.projection_dim, 1),
      "projection_hidden_dim": _int_at_least("projection_hidden_dim", m.projection_hidden_dim, 0),
      "attention_activation": _choice("attention_activation", m.attention_activation,
                                      ATTENTION_ACTIVATIONS),
      "dtype": DTYPES[_choice("dtype", m.dtype, tuple(DTYPES))],
      "zero_init_residual": m.zero_init_residual,
      "cpu_kernels": m.get("cpu_kernels", False),
      "convs_per_stage": _int_at_least("convs_per_stage", m.convs_per_stage, 1),
      "space_to_depth": _int_at_least("space_to_depth", m.space_to_depth, 1),
      "pool": _choice("pool", m.pool, POOLS),
  }


def _backbone(name: str, width: int, zero_init_residual: bool, convs_per_stage: int,
              space_to_depth: int, pool: str, axis_name: Optional[str],
              dtype: Any, cpu_kernels: bool) -> nn.Module:
  kwargs = dict(width=width, axis_name=axis_name, dtype=dtype)
  if name != "pointnet":
    kwargs["cpu_kernels"] = cpu_kernels
  if name == "resnet18":
    return resnet18(zero_init_residual=zero_init_residual, **kwargs)
  if name == "resnet50":
    return resnet50(zero_init_residual=zero_init_residual, **kwargs)
  if name == "small_cnn":
    return SmallCNN(convs_per_stage=convs_per_stage, space_to_depth=space_to_depth, pool=pool,
                    **kwargs)
  return PointNet(**kwargs)


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
  if value not in allowed:
    raise UserInputError(f"model.{field} must be one of {', '.join(allowed)}; got {value!r}")
  return value


def _int_at_least(field: str, value: Any, low: int) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise UserInputError(f"model.{field} must be an int >= {low}; got {value!r}")
  return value
