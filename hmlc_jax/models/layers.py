"""Layer helpers shared by every backbone: the bias-free convolution (He-normal
fan-out initialiser; on CPU a patch-matmul kernel gradient), the (optionally
cross-device synchronised) BatchNorm factories, plain and fused with a ReLU,
and an input-rank check."""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

from hmlc_jax.models.batchnorm import BatchNormReLU
from hmlc_jax.models.conv import conv_general_dilated

# BatchNorm settings of every backbone (running averages, variance floor).
BN_MOMENTUM, BN_EPSILON = 0.9, 1e-5
# He-normal with fan_out, as torchvision initialises ResNet convolutions.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def batch_norm(train: bool, axis_name: Optional[str], dtype: Any,
               scale_init: Callable = nn.initializers.ones) -> Callable[..., nn.Module]:
  """BatchNorm constructor with the library's settings.

  Under ``pmap`` with ``axis_name`` the batch statistics of train mode are
  averaged over that axis (synchronised BatchNorm); in eval mode the running
  averages are used and ``axis_name`` is never touched, so eval also works
  outside ``pmap``.

  Args:
    train: batch statistics (and running-average updates) if True, running
      averages if False.
    axis_name: pmap axis to average batch statistics over, or None.
    dtype: compute dtype; parameters stay float32.
    scale_init: initialiser of the scale (``zeros`` to zero-init a residual).

  Returns:
    a partial of ``nn.BatchNorm``; call it with an optional ``name``.
  """
  return functools.partial(nn.BatchNorm, use_running_average=not train,
                           momentum=BN_MOMENTUM, epsilon=BN_EPSILON, axis_name=axis_name,
                           dtype=dtype, param_dtype=jnp.float32, scale_init=scale_init)


def batch_norm_relu(train: bool, axis_name: Optional[str],
                    dtype: Any) -> Callable[..., nn.Module]:
  """``relu(batch_norm(train, axis_name, dtype)(...)(x))`` as one module with a
  hand-written gradient (`hmlc_jax.models.batchnorm`); the same parameters,
  statistics and values. Call it with an optional ``name``."""
  return functools.partial(BatchNormReLU, use_running_average=not train,
                           momentum=BN_MOMENTUM, epsilon=BN_EPSILON, axis_name=axis_name,
                           dtype=dtype)


def conv(features: int, kernel: int, stride: int, dtype: Any, name: str,
         cpu_kernels: bool = False) -> nn.Conv:
  """Bias-free ``kernel x kernel`` convolution (a BatchNorm always follows).
  With ``cpu_kernels`` its kernel gradient is a patch matmul on CPU
  (``hmlc_jax.models.conv``; reverse mode only); otherwise plain
  ``lax.conv_general_dilated``, differentiable in every mode."""
  kernels = dict(conv_general_dilated=conv_general_dilated) if cpu_kernels else {}
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="SAME",
                 use_bias=False, kernel_init=conv_init, dtype=dtype,
                 param_dtype=jnp.float32, name=name, **kernels)


def check_rank(x: jnp.ndarray, rank: int, what: str) -> None:
  """Raises ValueError naming ``what`` unless ``x.ndim == rank``."""
  if x.ndim != rank:
    raise ValueError(f"expected {what} of rank {rank}, got shape {x.shape}")
