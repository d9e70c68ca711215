"""A small VGG-style CNN for quick CPU runs on 32x32 (e.g. single-channel) images."""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from hmlc_jax.models.resnet import batch_norm, check_rank, conv


class SmallCNN(nn.Module):
  """Three stages of widths ``(w, 2w, 4w)``, each ``convs_per_stage`` x
  (3x3 conv -> BN -> ReLU) then a 2x2 max-pool; global average pool.

  Images ``[B, H, W, C]`` -> representation ``[B, 4 * width]``. H and W
  should be at least 8 (three halvings).
  """
  width: int = 32
  convs_per_stage: int = 2
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """float ``[B, H, W, C]`` -> float32 ``[B, 4 * width]``."""
    check_rank(x, 4, "[B, H, W, C] images")
    bn = batch_norm(train, self.axis_name, self.dtype)
    x = x.astype(self.dtype)
    for stage in range(3):
      for index in range(self.convs_per_stage):
        name = f"stage{stage + 1}_{index + 1}"
        x = conv(self.width * 2 ** stage, 3, 1, self.dtype, f"{name}_conv")(x)
        x = nn.relu(bn(name=f"{name}_bn")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))
