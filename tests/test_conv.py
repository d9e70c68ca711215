"""hmlc_jax.models.conv and the small CNN's pool and space-to-depth stem, against
float64 references (``lax.conv_general_dilated``'s own autodiff, ``nn.max_pool``,
an explicit loop)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from hmlc_jax.models import conv, small_cnn
from tests.helpers import init_variables, normal

DN = ("NHWC", "HWIO", "NHWC")


def _loss(conv_fn, x, w, strides, padding):
  y = conv_fn(x, w, strides, padding, dimension_numbers=DN)
  return jnp.sum(jnp.sin(y) * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) / y.size)


@pytest.mark.parametrize("x_shape, w_shape, strides, padding", [
    ((2, 7, 9, 3), (3, 3, 3, 5), (1, 1), "SAME"),
    ((2, 8, 8, 4), (1, 1, 4, 6), (1, 1), "SAME"),
    ((1, 6, 5, 2), (3, 2, 2, 3), (1, 1), "VALID"),
    ((2, 6, 6, 2), (3, 3, 2, 2), (1, 1), ((2, 0), (1, 3))),
    ((2, 9, 9, 3), (3, 3, 3, 4), (2, 2), "SAME"),            # strided: XLA's path
    ((2, 6, 6, 2), (3, 3, 2, 2), (1, 1), ((-1, 0), (1, 1))),  # negative pad: XLA's path
])
def test_values_and_gradients_equal_lax_in_float64(x_shape, w_shape, strides, padding):
  with jax.enable_x64(True):
    x, w = normal(0, x_shape, np.float64), normal(1, w_shape, np.float64)

    def value_and_grads(conv_fn):    # one program per side (eager ops compile one by one)
      return jax.jit(lambda a, b: (
          conv_fn(a, b, strides, padding, dimension_numbers=DN),
          jax.grad(lambda a_, b_: _loss(conv_fn, a_, b_, strides, padding), (0, 1))(a, b)))

    ours, grads = value_and_grads(conv.conv_general_dilated)(x, w)
    theirs, expected = value_and_grads(lax.conv_general_dilated)(x, w)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, expected):
      np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 2, 3, 6])
def test_patch_kernel_grad_is_the_sum_over_positions(chunk):
  """The im2col kernel gradient against the definition, written as loops, with
  the batch of 6 cut into chunks of 1, 2, 3 and 6 examples."""
  rng = np.random.default_rng(0)
  x, dy = rng.normal(size=(6, 4, 5, 3)), rng.normal(size=(6, 4, 5, 2))
  pads = ((1, 1), (1, 1))
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  want = np.zeros((3, 3, 3, 2))
  for i in range(3):
    for j in range(3):
      for y in range(4):
        for z in range(5):
          want[i, j] += np.einsum("nc,no->co", xp[:, y + i, z + j], dy[:, y, z])
  per_example = 4 * 5 * 3 * 3 * 3 * 8     # patch bytes of one example in float64
  assert conv.chunk_rows(6, per_example, chunk * per_example + 7) == chunk
  with jax.enable_x64(True):
    got = conv.patch_kernel_grad(jnp.asarray(x), jnp.asarray(dy), kernel_shape=(3, 3, 3, 2),
                                 pads=pads, chunk_bytes=chunk * per_example)
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_chunk_rows_is_the_largest_divisor_in_the_budget():
  assert [conv.chunk_rows(12, 10, b) for b in (0, 10, 35, 45, 60, 119, 1000)] == \
      [1, 1, 3, 4, 6, 6, 12]
  assert conv.chunk_rows(7, 10, 69) == 1      # a prime batch: single examples


def test_both_platform_branches_give_the_same_kernel_gradient():
  with jax.enable_x64(True):
    x, dy = normal(0, (2, 5, 6, 3), np.float64), normal(1, (2, 5, 6, 4), np.float64)
    options = dict(kernel_shape=(3, 3, 3, 4), pads=((1, 1), (1, 1)))
    np.testing.assert_allclose(conv.patch_kernel_grad(x, dy, **options),
                               conv.xla_kernel_grad(x, dy, **options), rtol=1e-12)


def test_bfloat16_gradients_follow_float32():
  """bfloat16 inputs (the CIFAR configs' compute dtype) give bfloat16 gradients
  on both platform branches, close to the float32 ones."""
  x, w = normal(0, (4, 6, 6, 8)), normal(1, (3, 3, 8, 4))
  grad = lambda a, b: jax.jit(jax.grad(lambda a_, b_: jnp.sum(conv.conv_general_dilated(
      a_, b_, (1, 1), "SAME", dimension_numbers=DN).astype(jnp.float32) ** 2), (0, 1)))(a, b)
  low = grad(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16))
  assert [g.dtype for g in low] == [jnp.bfloat16, jnp.bfloat16]
  for got, want in zip(low, grad(x, w)):
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=0.05,
                               atol=0.05 * float(jnp.max(jnp.abs(want))))


def test_cpu_kernel_gradient_is_a_matmul_not_a_convolution():
  """On CPU the compiled kernel gradient holds one convolution (the forward
  pass) and a dot; with XLA's gradient it would hold two convolutions."""
  x, w = jnp.ones((4, 8, 8, 3)), jnp.ones((3, 3, 3, 5))
  grad = lambda fn: jax.jit(jax.grad(lambda w_: jnp.sum(fn(
      x, w_, (1, 1), "SAME", dimension_numbers=DN) ** 2)))
  ours = grad(conv.conv_general_dilated).lower(w).compile().as_text()
  theirs = grad(lax.conv_general_dilated).lower(w).compile().as_text()
  count = lambda text: text.count(" convolution(")
  assert (count(ours), count(theirs)) == (1, 2)
  assert " dot(" in ours


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 9, 2), (1, 3, 3, 1)])
def test_max_pool_2x2_equals_flax_max_pool(shape):
  x = normal(0, shape)
  np.testing.assert_array_equal(jax.jit(small_cnn.max_pool_2x2)(x),
                                nn.max_pool(x, (2, 2), strides=(2, 2)))
  # Without ties the gradients are the same too.
  g = lambda pool: jax.jit(jax.grad(lambda a: jnp.sum(pool(a) ** 3)))(x)
  np.testing.assert_allclose(g(small_cnn.max_pool_2x2),
                             g(lambda a: nn.max_pool(a, (2, 2), strides=(2, 2))), rtol=1e-6)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (3, 9, 11, 4)])
def test_max_pool_2x2_splits_tied_gradients_as_autodiff_of_the_window_max(shape):
  """With many ties (small integers, ReLU zeros) the gradient goes to every
  position holding its window's maximum, split evenly: the same as autodiff of
  a reshape and ``jnp.max`` over each window, in float64."""
  with jax.enable_x64():
    x = jnp.asarray(np.random.default_rng(0).integers(-2, 3, size=shape), jnp.float64)
    x = jnp.maximum(x, 0)                                   # ReLU zeros: whole tied windows

    def window_max(a):
      b, h, w, c = a.shape
      a = a[:, :h // 2 * 2, :w // 2 * 2]
      return jnp.max(a.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))

    cotangent = jnp.asarray(np.random.default_rng(1).normal(size=window_max(x).shape))
    grad = lambda pool: jax.jit(jax.grad(lambda a: jnp.sum(pool(a) * cotangent)))(x)
    np.testing.assert_array_equal(small_cnn.max_pool_2x2(x), window_max(x))
    got, expected = grad(small_cnn.max_pool_2x2), grad(window_max)
    b, h, w, c = shape
    windows = np.asarray(x)[:, :h // 2 * 2, :w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c)
    maxima = (windows == windows.max(axis=(2, 4), keepdims=True)).sum(axis=(2, 4))
    assert np.any(maxima == 2) and np.any(maxima >= 3)     # ties of two and more
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_space_to_depth_against_a_loop():
  x = np.random.default_rng(0).normal(size=(2, 6, 4, 3)).astype(np.float32)
  got = np.asarray(small_cnn.space_to_depth(jnp.asarray(x), 2))
  assert got.shape == (2, 3, 2, 12)
  for i in range(3):
    for j in range(2):
      for a in range(2):
        for b in range(2):
          np.testing.assert_array_equal(got[:, i, j, (a * 2 + b) * 3:(a * 2 + b + 1) * 3],
                                        x[:, 2 * i + a, 2 * j + b])
  with pytest.raises(ValueError, match="space_to_depth=2 needs image height and width divisible"):
    small_cnn.space_to_depth(jnp.ones((1, 15, 16, 1)), 2)


def test_space_to_depth_stem_keeps_the_later_stages():
  """With s=2 the first conv sees [B, H/2, W/2, 4C] and the first stage does
  not pool: the later stages and the representation keep their sizes."""
  x = normal(0, (2, 16, 12, 1))
  plain = small_cnn.SmallCNN(width=4, convs_per_stage=1)
  folded = small_cnn.SmallCNN(width=4, convs_per_stage=1, space_to_depth=2)
  p_vars, f_vars = (init_variables(m, x, 1, train=False) for m in (plain, folded))
  assert p_vars["params"]["stage1_1_conv"]["kernel"].shape == (3, 3, 1, 4)
  assert f_vars["params"]["stage1_1_conv"]["kernel"].shape == (3, 3, 4, 4)
  for name in ("stage2_1_conv", "stage3_1_conv"):
    assert p_vars["params"][name]["kernel"].shape == f_vars["params"][name]["kernel"].shape
  _, plain_acts = plain.apply(p_vars, x, train=False, capture_intermediates=True)
  _, folded_acts = folded.apply(f_vars, x, train=False, capture_intermediates=True)
  shape = lambda acts: acts["intermediates"]["stage2_1_conv"]["__call__"][0].shape
  assert shape(plain_acts) == shape(folded_acts) == (2, 8, 6, 8)
  assert folded.apply(f_vars, x, train=False).shape == (2, 16)


def test_flatten_pool_keeps_every_position_of_the_mean_pooled_map():
  """pool="flatten" returns the last map itself; its mean over positions is
  exactly what pool="mean" returns with the same parameters."""
  x = normal(0, (2, 28, 28, 1))
  mean = small_cnn.SmallCNN(width=4, convs_per_stage=1, space_to_depth=2)
  flat = small_cnn.SmallCNN(width=4, convs_per_stage=1, space_to_depth=2, pool="flatten")
  variables = init_variables(mean, x, 1, train=False)
  r_flat = np.asarray(flat.apply(variables, x, train=False))
  assert r_flat.shape == (2, 3 * 3 * 16)
  np.testing.assert_allclose(r_flat.reshape(2, 9, 16).mean(axis=1),
                             mean.apply(variables, x, train=False), rtol=1e-5, atol=1e-6)
