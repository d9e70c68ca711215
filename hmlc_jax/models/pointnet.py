"""PointNet backbone without T-nets (Qi et al., 2017), for point-cloud inputs."""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from hmlc_jax.models.layers import batch_norm, check_rank


class PointNet(nn.Module):
  """Shared per-point MLP of widths ``width * (1, 1, 1, 2, 16)``, each layer
  Dense -> BN -> ReLU, then a max over points.

  Point clouds ``[B, P, C]`` (C = 3 for xyz) -> representation
  ``[B, 16 * width]`` (1024 at width 64). Every layer acts on each point
  alone and BatchNorm statistics pool over batch and points, so the output
  does not depend on the order of the points.
  """
  width: int = 64
  multipliers: tuple[int, ...] = (1, 1, 1, 2, 16)
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """float ``[B, P, C]`` -> float32 ``[B, 16 * width]``."""
    check_rank(x, 3, "[B, P, C] point clouds")
    bn = batch_norm(train, self.axis_name, self.dtype)
    x = x.astype(self.dtype)
    for index, multiplier in enumerate(self.multipliers):
      x = nn.Dense(self.width * multiplier, use_bias=False, dtype=self.dtype,
                   param_dtype=jnp.float32, name=f"mlp{index + 1}")(x)
      x = nn.relu(bn(name=f"bn{index + 1}")(x))
    return jnp.max(x, axis=1).astype(jnp.float32)
