"""A small VGG-style CNN for quick CPU runs on 32x32 (e.g. single-channel) images."""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from hmlc_jax.errors import UserInputError
from hmlc_jax.models.layers import batch_norm, batch_norm_relu, check_rank, conv

POOLS = ("mean", "flatten")


class SmallCNN(nn.Module):
  """Three stages of widths ``(w, 2w, 4w)``, each ``convs_per_stage`` x
  (3x3 conv -> BN -> ReLU) then a 2x2 max-pool; global average pool.

  ``space_to_depth=s > 1`` first folds each ``s x s`` block of pixels into
  channels (``[B, H, W, C] -> [B, H/s, W/s, s*s*C]``) and drops the first
  stage's pool: the first convolutions run at 1/s of the resolution, where on
  CPU the full-resolution activations of the first stage cost most of the
  step (docs/benchmarks.md); at ``s=2`` the later stages see the same sizes.

  ``pool`` makes the representation from the last stage's ``[B, h, w, 4 *
  width]`` map: ``"mean"`` averages over positions (``[B, 4 * width]``);
  ``"flatten"`` keeps every position (``[B, h * w * 4 * width]``), so the
  probe and the projection head also see where a feature is (for small
  images whose classes differ by layout, e.g. Fashion-MNIST's shirts and
  coats; the cost is the head's first layer).

  ``cpu_kernels`` uses the hand-written gradients that pay on CPU (the
  convolutions' kernel gradient, BatchNorm + ReLU, the 2x2 max-pool), which
  support reverse-mode differentiation only; without it every layer is plain
  Flax / lax. The values and parameters are the same either way.

  Images ``[B, H, W, C]`` -> representation as above. H and W should be at
  least 8 (three halvings) and divide by ``space_to_depth``.
  """
  width: int = 32
  convs_per_stage: int = 2
  space_to_depth: int = 1
  pool: str = "mean"
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  cpu_kernels: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """float ``[B, H, W, C]`` -> float32 ``[B, R]`` (R as the class docstring says)."""
    check_rank(x, 4, "[B, H, W, C] images")
    if self.cpu_kernels:
      bn_relu, pool = batch_norm_relu(train, self.axis_name, self.dtype), max_pool_2x2
    else:
      bn = batch_norm(train, self.axis_name, self.dtype)
      bn_relu = lambda name: lambda y: nn.relu(bn(name=name)(y))
      pool = lambda y: nn.max_pool(y, (2, 2), strides=(2, 2))
    x = x.astype(self.dtype)
    s = self.space_to_depth
    if s > 1:
      x = space_to_depth(x, s)
    for stage in range(3):
      for index in range(self.convs_per_stage):
        name = f"stage{stage + 1}_{index + 1}"
        x = conv(self.width * 2 ** stage, 3, 1, self.dtype, f"{name}_conv",
                 self.cpu_kernels)(x)
        x = bn_relu(name=f"{name}_bn")(x)
      if stage or s == 1:
        x = pool(x)
    x = x.astype(jnp.float32)
    if self.pool == "flatten":
      return x.reshape(x.shape[0], -1)
    return jnp.mean(x, axis=(1, 2))


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
  """``nn.max_pool(x, (2, 2), strides=(2, 2))`` (VALID: an odd last row or column
  is dropped), elementwise on CPU, GPU and TPU alike.

  The forward pass is the maximum of the window's four strided corners, the
  backward pass gives each window's gradient to the positions that hold its
  maximum, split evenly between ties (as autodiff of ``jnp.max`` over the
  window does). Both are single elementwise loops. XLA's own max-pool
  gradient (select-and-scatter) cost more than the first convolution on CPU,
  and autodiff of a reshape-and-max spent most of the pool's time in the
  window reductions that count ties (docs/benchmarks.md).
  """
  _, h, w, _ = x.shape
  return _pool_even(x[:, :h // 2 * 2, :w // 2 * 2])


def _corners(x: jnp.ndarray) -> tuple:
  return x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]


@jax.custom_vjp
def _pool_even(x: jnp.ndarray) -> jnp.ndarray:
  """Max-pool of an ``[B, H, W, C]`` map with even H and W."""
  top_left, top_right, bottom_left, bottom_right = _corners(x)
  return jnp.maximum(jnp.maximum(top_left, top_right), jnp.maximum(bottom_left, bottom_right))


def _pool_even_fwd(x):
  y = _pool_even(x)
  return y, (x, y)


def _pool_even_bwd(residuals, dy):
  x, y = residuals
  ties = sum((corner == y).astype(dy.dtype) for corner in _corners(x))   # >= 1
  share = (dy / ties)[:, :, None, :, None, :]
  b, h, w, c = x.shape
  windows = x.reshape(b, h // 2, 2, w // 2, 2, c)
  dx = jnp.where(windows == y[:, :, None, :, None, :], share, jnp.zeros_like(share))
  return (dx.reshape(x.shape),)


_pool_even.defvjp(_pool_even_fwd, _pool_even_bwd)


def space_to_depth(x: jnp.ndarray, s: int) -> jnp.ndarray:
  """``[B, H, W, C] -> [B, H/s, W/s, s*s*C]``: channel ``(a*s + b)*C + c`` of
  output pixel ``(i, j)`` is channel ``c`` of input pixel ``(s*i + a, s*j + b)``."""
  b, h, w, c = x.shape
  if h % s or w % s:
    raise UserInputError(f"model.space_to_depth={s} needs image height and width divisible "
                         f"by it; got {h}x{w}")
  x = x.reshape(b, h // s, s, w // s, s, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // s, w // s, s * s * c)
