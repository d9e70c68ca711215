"""Projection head (SupCon MLP) and A-HMLC per-level attention heads."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

ATTENTION_ACTIVATIONS = ("sigmoid", "softmax")


class ProjectionHead(nn.Module):
  """``Dense(hidden) -> ReLU -> Dense(dim)``; the output is not normalised."""
  hidden_dim: int
  dim: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """float ``[B, R]`` -> float32 ``[B, dim]``."""
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, param_dtype=jnp.float32, name=name)
    x = nn.relu(dense(self.hidden_dim, "hidden")(x))
    return dense(self.dim, "out")(x).astype(jnp.float32)


class AttentionHeads(nn.Module):
  """One ``Dense(D) -> ReLU -> Dense(D)`` mask generator per hierarchy level.

  All ``num_levels`` MLPs live in stacked parameters with a leading level axis
  (kernels ``[H, D, D]``, biases ``[H, D]``) and run as one einsum. The logits
  become masks by ``sigmoid`` (entries in (0, 1)) or ``D * softmax`` over the
  D axis (entries positive, summing to D per level).
  """
  num_levels: int
  activation: str = "sigmoid"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jnp.ndarray) -> jnp.ndarray:
    """embedding float ``[B, D]`` -> masks float32 ``[B, H, D]``."""
    if self.activation not in ATTENTION_ACTIVATIONS:
      raise ValueError(f"activation must be one of {ATTENTION_ACTIVATIONS}, "
                       f"got {self.activation!r}")
    dim = z.shape[-1]
    hidden = nn.relu(self._level_dense("hidden", z, dim, "bd,hde->bhe"))
    logits = self._level_dense("out", hidden, dim, "bhd,hde->bhe").astype(jnp.float32)
    if self.activation == "sigmoid":
      return jax.nn.sigmoid(logits)
    return dim * jax.nn.softmax(logits, axis=-1)

  def _level_dense(self, name: str, x: jnp.ndarray, dim: int, equation: str) -> jnp.ndarray:
    """One stacked Dense layer: ``x @ kernel[h] + bias[h]`` for every level h."""
    kernel_init = nn.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
    kernel = self.param(f"{name}_kernel", kernel_init, (self.num_levels, dim, dim),
                        jnp.float32)
    bias = self.param(f"{name}_bias", nn.initializers.zeros, (self.num_levels, dim),
                      jnp.float32)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    return jnp.einsum(equation, x, kernel) + bias
