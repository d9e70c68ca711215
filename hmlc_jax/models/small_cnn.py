"""A small VGG-style CNN for quick CPU runs on 32x32 (e.g. single-channel) images."""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from hmlc_jax.errors import UserInputError
from hmlc_jax.models.layers import batch_norm, check_rank, conv

POOLS = ("mean", "flatten")


class SmallCNN(nn.Module):
  """Three stages of widths ``(w, 2w, 4w)``, each ``convs_per_stage`` x
  (3x3 conv -> BN -> ReLU) then a 2x2 max-pool; global average pool.

  ``space_to_depth=s > 1`` first folds each ``s x s`` block of pixels into
  channels (``[B, H, W, C] -> [B, H/s, W/s, s*s*C]``) and drops the first
  stage's pool: the first convolutions run at 1/s of the resolution, where on
  CPU the full-resolution activations of the first stage cost most of the
  step (BENCHMARKS.md); at ``s=2`` the later stages see the same sizes.

  ``pool`` makes the representation from the last stage's ``[B, h, w, 4 *
  width]`` map: ``"mean"`` averages over positions (``[B, 4 * width]``);
  ``"flatten"`` keeps every position (``[B, h * w * 4 * width]``), so the
  probe and the projection head also see where a feature is (for small
  images whose classes differ by layout, e.g. Fashion-MNIST's shirts and
  coats; the cost is the head's first layer).

  Images ``[B, H, W, C]`` -> representation as above. H and W should be at
  least 8 (three halvings) and divide by ``space_to_depth``.
  """
  width: int = 32
  convs_per_stage: int = 2
  space_to_depth: int = 1
  pool: str = "mean"
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """float ``[B, H, W, C]`` -> float32 ``[B, R]`` (R as the class docstring says)."""
    check_rank(x, 4, "[B, H, W, C] images")
    bn = batch_norm(train, self.axis_name, self.dtype)
    x = x.astype(self.dtype)
    s = self.space_to_depth
    if s > 1:
      x = space_to_depth(x, s)
    for stage in range(3):
      for index in range(self.convs_per_stage):
        name = f"stage{stage + 1}_{index + 1}"
        x = conv(self.width * 2 ** stage, 3, 1, self.dtype, f"{name}_conv")(x)
        x = nn.relu(bn(name=f"{name}_bn")(x))
      if stage or s == 1:
        x = max_pool_2x2(x)
    x = x.astype(jnp.float32)
    if self.pool == "flatten":
      return x.reshape(x.shape[0], -1)
    return jnp.mean(x, axis=(1, 2))


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
  """``nn.max_pool(x, (2, 2), strides=(2, 2))`` (VALID: an odd last row or column
  is dropped) as a reshape and a max. The same values; the gradient is an
  elementwise mask instead of XLA's select-and-scatter, which on CPU cost more
  than the first convolution itself (BENCHMARKS.md). Ties split the gradient
  evenly instead of giving it to one position."""
  b, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def space_to_depth(x: jnp.ndarray, s: int) -> jnp.ndarray:
  """``[B, H, W, C] -> [B, H/s, W/s, s*s*C]``: channel ``(a*s + b)*C + c`` of
  output pixel ``(i, j)`` is channel ``c`` of input pixel ``(s*i + a, s*j + b)``."""
  b, h, w, c = x.shape
  if h % s or w % s:
    raise UserInputError(f"model.space_to_depth={s} needs image height and width divisible "
                         f"by it; got {h}x{w}")
  x = x.reshape(b, h // s, s, w // s, s, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // s, w // s, s * s * c)
