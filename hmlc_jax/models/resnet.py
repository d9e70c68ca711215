"""CIFAR-style ResNet-18 / ResNet-50 backbones (Flax linen).

The CIFAR variant of He et al. (2016) as used by SupCon: a 3x3 stride-1 stem
and no max-pool, four stages of widths ``width * (1, 2, 4, 8)`` and strides
``(1, 2, 2, 2)``, then global average pooling. At ``width=64`` the
representation is 512-d (ResNet-18) or 2048-d (ResNet-50).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from hmlc_jax.models.layers import batch_norm, check_rank, conv

class _Block(nn.Module):
  """Fields shared by the residual blocks."""
  features: int
  stride: int = 1
  zero_init_residual: bool = False
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  cpu_kernels: bool = False

  def last_bn(self, train: bool) -> Callable[..., nn.Module]:
    """BatchNorm before the residual sum; scale starts at 0 with ``zero_init_residual``."""
    scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    return batch_norm(train, self.axis_name, self.dtype, scale)


class BasicBlock(_Block):
  """Two 3x3 convolutions; output has ``features`` channels."""
  expansion = 1

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """``[B, H, W, C] -> [B, H/stride, W/stride, features]``."""
    bn = batch_norm(train, self.axis_name, self.dtype)
    y = conv(self.features, 3, self.stride, self.dtype, "conv1", self.cpu_kernels)(x)
    y = nn.relu(bn(name="bn1")(y))
    y = conv(self.features, 3, 1, self.dtype, "conv2", self.cpu_kernels)(y)
    y = self.last_bn(train)(name="bn2")(y)
    return nn.relu(y + _shortcut(x, self.features, self.stride, bn, self.dtype,
                                 self.cpu_kernels))


class Bottleneck(_Block):
  """1x1 reduce, 3x3 (strided), 1x1 expand; output has ``4 * features`` channels."""
  expansion = 4

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """``[B, H, W, C] -> [B, H/stride, W/stride, 4 * features]``."""
    bn = batch_norm(train, self.axis_name, self.dtype)
    out = self.features * self.expansion
    kernels = self.cpu_kernels
    y = nn.relu(bn(name="bn1")(conv(self.features, 1, 1, self.dtype, "conv1", kernels)(x)))
    y = nn.relu(bn(name="bn2")(conv(self.features, 3, self.stride, self.dtype, "conv2",
                                    kernels)(y)))
    y = conv(out, 1, 1, self.dtype, "conv3", self.cpu_kernels)(y)
    y = self.last_bn(train)(name="bn3")(y)
    return nn.relu(y + _shortcut(x, out, self.stride, bn, self.dtype, self.cpu_kernels))


def _shortcut(x: jnp.ndarray, features: int, stride: int, bn: Callable,
              dtype: Any, cpu_kernels: bool) -> jnp.ndarray:
  """Identity, or 1x1 conv + BN when the block changes the shape.

  Must be called inside the block's compact ``__call__`` (it creates the
  ``shortcut_conv`` / ``shortcut_bn`` submodules there).
  """
  if stride == 1 and x.shape[-1] == features:
    return x
  return bn(name="shortcut_bn")(conv(features, 1, stride, dtype, "shortcut_conv",
                                     cpu_kernels)(x))


class ResNet(nn.Module):
  """CIFAR ResNet backbone: images ``[B, H, W, C]`` -> representation ``[B, R]``.

  ``R = 8 * width * block.expansion``.
  """
  stage_sizes: Sequence[int]
  block: type = BasicBlock
  width: int = 64
  zero_init_residual: bool = False
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  cpu_kernels: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """float ``[B, H, W, C]`` -> float32 ``[B, 8 * width * expansion]``."""
    check_rank(x, 4, "[B, H, W, C] images")
    x = conv(self.width, 3, 1, self.dtype, "stem_conv", self.cpu_kernels)(
        x.astype(self.dtype))
    x = nn.relu(batch_norm(train, self.axis_name, self.dtype)(name="stem_bn")(x))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for index in range(num_blocks):
        stride = 2 if stage > 0 and index == 0 else 1
        x = self.block(features=self.width * 2 ** stage, stride=stride,
                       zero_init_residual=self.zero_init_residual,
                       axis_name=self.axis_name, dtype=self.dtype,
                       cpu_kernels=self.cpu_kernels,
                       name=f"stage{stage + 1}_block{index + 1}")(x, train=train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def resnet18(**kwargs) -> ResNet:
  """BasicBlock [2, 2, 2, 2]; 512-d representation at width 64."""
  return ResNet(stage_sizes=(2, 2, 2, 2), block=BasicBlock, **kwargs)


def resnet50(**kwargs) -> ResNet:
  """Bottleneck [3, 4, 6, 3]; 2048-d representation at width 64."""
  return ResNet(stage_sizes=(3, 4, 6, 3), block=Bottleneck, **kwargs)
