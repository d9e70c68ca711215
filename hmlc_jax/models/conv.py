"""A drop-in ``lax.conv_general_dilated`` whose kernel gradient is fast on CPU.

XLA:CPU runs a convolution's forward pass and its input gradient at matmul-like
rates, but the kernel gradient (a convolution that contracts over the batch)
several times slower (the small CNN's middle layer: about 10x its forward pass;
docs/benchmarks.md).
For stride-1, undilated, ungrouped convolutions this module keeps XLA's
forward pass and input gradient and computes the kernel gradient as matmuls
over the patches (im2col), ``dW[kh, kw, i, o] = sum_n,y,x
x_pad[n, y + kh, x + kw, i] * dy[n, y, x, o]``, one cache-sized chunk of the
batch at a time. The choice is made per
platform when the program is lowered (``lax.platform_dependent``): on GPU and
TPU the kernel gradient is XLA's own, exactly what autodiff gives. Any other
convolution (strided, dilated, grouped, other layouts) goes to
``lax.conv_general_dilated`` untouched.

Only reverse mode is defined (``jax.custom_vjp``); nothing here takes forward-
mode derivatives of a backbone.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from hmlc_jax.parallel import sum_like, vary_like

_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1),
                                 out_spec=(0, 3, 1, 2))


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, precision=None, **kwargs):
  """Same signature and result as ``lax.conv_general_dilated`` (pass it as
  ``nn.Conv(conv_general_dilated=...)``); 2-D NHWC/HWIO stride-1 convolutions
  take the fast kernel gradient on CPU."""
  general = functools.partial(
      lax.conv_general_dilated, window_strides=window_strides, padding=padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      precision=precision, **kwargs)
  if not _plain_nhwc(lhs, rhs, window_strides, lhs_dilation, rhs_dilation,
                     dimension_numbers, feature_group_count, kwargs):
    return general(lhs, rhs)
  pads = padding
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in pads)
  if min(min(pair) for pair in pads) < 0:
    return general(lhs, rhs)
  return _conv(lhs, rhs, pads, precision)


def _plain_nhwc(lhs, rhs, strides, lhs_dilation, rhs_dilation, dimension_numbers,
                groups, kwargs) -> bool:
  if lhs.ndim != 4 or rhs.ndim != 4 or groups != 1 or kwargs:
    return False
  if tuple(strides) != (1, 1):
    return False
  if any(d is not None and tuple(d) != (1, 1) for d in (lhs_dilation, rhs_dilation)):
    return False
  try:
    numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  except (TypeError, ValueError):
    return False
  return numbers == _NHWC


def _forward(x, w, pads, precision):
  return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=_NHWC,
                                  precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, w, pads, precision):
  return _forward(x, w, pads, precision)


def _conv_fwd(x, w, pads, precision):
  return _forward(x, w, pads, precision), (x, w)


def _conv_bwd(pads, precision, residuals, dy):
  x, w = residuals
  _, input_vjp = jax.vjp(lambda x_: _forward(x_, w, pads, precision), x)
  (dx,) = input_vjp(dy)
  options = dict(kernel_shape=w.shape, pads=pads, precision=precision)
  # Each branch's gradient is summed where w is replicated and x is not
  # (shard_map), so that both branches give w's type.
  branch = lambda grad: lambda x_, dy_, w_: sum_like(grad(x_, dy_, **options).astype(w_.dtype),
                                                     w_)
  dw = lax.platform_dependent(x, dy, w, cpu=branch(patch_kernel_grad),
                              default=branch(xla_kernel_grad))
  return sum_like(dx, x), dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def xla_kernel_grad(x: jnp.ndarray, dy: jnp.ndarray, *, kernel_shape: Sequence[int],
                    pads: Sequence[tuple[int, int]], precision: Any = None) -> jnp.ndarray:
  """The kernel gradient as autodiff of ``lax.conv_general_dilated`` gives it
  (GPU, TPU); arguments as ``patch_kernel_grad``."""
  w = jnp.zeros(kernel_shape, x.dtype)
  return jax.vjp(lambda w_: _forward(x, w_, pads, precision), w)[1](dy)[0]


# Bytes of one chunk's patch matrix in `patch_kernel_grad`: small enough to stay
# in a core's L2 cache (1.25 MiB on the CI machine), so the patches are built and
# consumed there instead of streaming 9x the activations through memory.
CHUNK_BYTES = 512 * 1024


def chunk_rows(n: int, bytes_per_row: int, budget: int = CHUNK_BYTES) -> int:
  """The largest divisor of ``n`` whose rows take at most ``budget`` bytes (at least 1)."""
  best = 1
  for size in range(1, n + 1):
    if n % size == 0 and size * bytes_per_row <= budget:
      best = size
  return best


def patch_kernel_grad(x: jnp.ndarray, dy: jnp.ndarray, *, kernel_shape: Sequence[int],
                      pads: Sequence[tuple[int, int]], precision: Any = None,
                      chunk_bytes: int | None = None) -> jnp.ndarray:
  """Kernel gradient of a stride-1 NHWC/HWIO convolution as patch matmuls.

  The batch is cut into chunks whose patch matrix (``[rows, KH * KW * I]``)
  fits ``chunk_bytes``; a ``lax.scan`` pads each chunk, builds its patches and
  accumulates ``patches^T @ dy`` in (at least) float32. One patch matrix of the
  whole batch (9x the activations) is memory-bound on CPU, so chunks that
  stay in cache are faster (docs/benchmarks.md).

  Args:
    x: ``[N, H, W, I]`` input of the convolution.
    dy: ``[N, H', W', O]`` cotangent of its output.
    kernel_shape: ``(KH, KW, I, O)``.
    pads: ``((top, bottom), (left, right))`` padding of the forward pass.
    precision: matmul precision.
    chunk_bytes: patch bytes per chunk (the chunk is a divisor of ``N``);
      None reads the module's ``CHUNK_BYTES`` when traced.

  Returns:
    ``[KH, KW, I, O]``, the gradient of ``sum(dy * conv(x, w))`` in ``w``, in
    the inputs' dtype (summed in at least float32).
  """
  kh, kw, cin, cout = kernel_shape
  n, ho, wo, _ = dy.shape
  budget = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
  rows = chunk_rows(n, ho * wo * kh * kw * cin * x.dtype.itemsize, budget)
  widths = ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0))
  accum = jnp.promote_types(x.dtype, jnp.float32)

  def accumulate(total, chunk):
    xc, dyc = chunk
    xp = jnp.pad(xc, widths)
    patches = jnp.concatenate(
        [xp[:, i:i + ho, j:j + wo, :] for i in range(kh) for j in range(kw)], axis=-1)
    part = jnp.einsum("pk,po->ko", patches.reshape(-1, kh * kw * cin),
                      dyc.reshape(-1, cout), precision=precision,
                      preferred_element_type=accum)
    return total + part, None

  chunks = (x.reshape(n // rows, rows, *x.shape[1:]), dy.reshape(n // rows, rows, *dy.shape[1:]))
  zero = vary_like(jnp.zeros((kh * kw * cin, cout), accum), dy)       # shard_map: as dy
  total, _ = lax.scan(accumulate, zero, chunks)
  return total.reshape(kh, kw, cin, cout).astype(jnp.result_type(x, dy))
