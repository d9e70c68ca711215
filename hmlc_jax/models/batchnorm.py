"""BatchNorm followed by ReLU as one operation with a hand-written gradient.

``relu(nn.BatchNorm(...)(x))`` differentiated by autodiff keeps ``x - mean``
and the ReLU's output as residuals and walks over the activations once per
primitive; on CPU, where the small CNN's step is bound by such passes, that
cost about a tenth of the step (docs/benchmarks.md). Here the forward
pass computes the statistics and writes only the output; the backward pass
recomputes the normalised input from ``x`` and the statistics, and needs one
pass for the two per-channel sums and one for the input gradient:

    z = (x - mean) * k + bias,  k = scale / sqrt(var + eps),  out = max(z, 0)
    dz = dout * [z > 0],  xhat = (x - mean) / sqrt(var + eps)
    dbias = sum(dz),  dscale = sum(dz * xhat)
    dx = k * (dz - Sum(dz) / M - xhat * Sum(dz * xhat) / M)

``Sum`` and ``M`` (the example count) run over every device of ``axis_name``
(synchronised BatchNorm). The parameter gradients are what autodiff would
give: under ``jax.pmap`` this device's share (summing the shares over devices
gives the full gradient); under ``jax.shard_map`` with ``check_vma``, where
the parameters are replicated values, the sum over devices itself. The
statistics and the running averages are exactly ``flax.linen.BatchNorm``'s
(float32 sums, ``var = E[x^2] - E[x]^2`` clamped at 0, biased variance in the
running average), and `BatchNormReLU` has its
parameter and statistic names, so checkpoints do not change.
"""
from __future__ import annotations

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from hmlc_jax.parallel import sum_like


def _psum(tree, axis_name: Optional[str]):
  return lax.psum(tree, axis_name) if axis_name else tree


def _accumulator(x: jnp.ndarray):
  """Statistics and gradients in at least float32 (float64 stays float64)."""
  return jnp.promote_types(x.dtype, jnp.float32)


def _count(x: jnp.ndarray, axis_name: Optional[str]):
  count = x.size // x.shape[-1]
  return count * lax.psum(1, axis_name) if axis_name else count


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_relu(x: jnp.ndarray, scale: jnp.ndarray, bias: jnp.ndarray,
                    axis_name: Optional[str] = None, epsilon: float = 1e-5):
  """Train-mode BatchNorm over every axis but the last, then ReLU.

  Args:
    x: ``[..., C]`` activations (float32 or bfloat16).
    scale, bias: float32 ``[C]``.
    axis_name: pmap axis whose devices share the statistics, or None.
    epsilon: added to the variance.

  Returns:
    ``(out, mean, var)``: ``out`` like ``x``; the batch mean and (biased)
    variance, ``[C]`` in at least float32, for the running averages.
  """
  return _forward(x, scale, bias, axis_name, epsilon)[0]


def _forward(x, scale, bias, axis_name, epsilon):
  axes = tuple(range(x.ndim - 1))
  x32 = x.astype(_accumulator(x))
  total, squares = _psum((jnp.sum(x32, axes), jnp.sum(x32 * x32, axes)), axis_name)
  count = _count(x, axis_name)
  mean = total / count
  var = jnp.maximum(0.0, squares / count - mean * mean)
  k = scale * lax.rsqrt(var + epsilon)
  out = jnp.maximum((x32 - mean) * k + bias, 0.0).astype(x.dtype)
  return (out, mean, var), (x, scale, bias, mean, var)


def _backward(axis_name, epsilon, residuals, cotangents):
  x, scale, bias, mean, var = residuals
  dout, dmean, dvar = cotangents
  axes = tuple(range(x.ndim - 1))
  inv_std = lax.rsqrt(var + epsilon)
  k = scale * inv_std
  centred = x.astype(_accumulator(x)) - mean
  dz = jnp.where(centred * k + bias > 0, dout.astype(centred.dtype), 0.0)
  xhat = centred * inv_std
  dbias, dscale = jnp.sum(dz, axes), jnp.sum(dz * xhat, axes)
  all_dbias, all_dscale, all_dmean, all_dvar = _psum((dbias, dscale, dmean, dvar), axis_name)
  count = _count(x, axis_name)
  dx = (k * (dz - all_dbias / count - xhat * (all_dscale / count))
        + all_dmean / count + (2.0 / count) * all_dvar * centred)
  # Under shard_map the replicated parameters' gradient is the sum over devices.
  return dx.astype(x.dtype), sum_like(dscale, scale), sum_like(dbias, bias)


batch_norm_relu.defvjp(lambda x, scale, bias, axis_name, epsilon: _forward(
    x, scale, bias, axis_name, epsilon), _backward)


class BatchNormReLU(nn.Module):
  """``relu(nn.BatchNorm(...)(x))`` with `batch_norm_relu`'s gradient in train
  mode; the same parameters (``scale``, ``bias``) and ``batch_stats``
  (``mean``, ``var``) as ``nn.BatchNorm``, the same settings as
  `hmlc_jax.models.layers.batch_norm`."""
  use_running_average: bool
  axis_name: Optional[str] = None
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """``[..., C]`` -> ``[..., C]`` in ``dtype``."""
    features = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
    ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
    x = x.astype(self.dtype)
    if self.use_running_average:
      k = scale * lax.rsqrt(ra_var.value + self.epsilon)
      return jnp.maximum((x - ra_mean.value) * k + bias, 0).astype(self.dtype)
    out, mean, var = batch_norm_relu(x, scale, bias, self.axis_name, self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return out
