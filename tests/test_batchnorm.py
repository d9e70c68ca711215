"""hmlc_jax.models.batchnorm: the fused BatchNorm + ReLU against the textbook
formulas differentiated by autodiff (float64), and against flax's BatchNorm
followed by a ReLU (values, running statistics, gradients, parameter names).
Under pmap it is checked in tests/sync_batchnorm_parity.py (small_cnn)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hmlc_jax.models import layers
from hmlc_jax.models.batchnorm import batch_norm_relu
from tests.helpers import init_variables

EPS = 1e-5


def reference(x, scale, bias):
  """BatchNorm (biased batch variance) then ReLU, over every axis but the last."""
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(x, axes)
  var = jnp.mean((x - mean) ** 2, axes)
  out = jnp.maximum((x - mean) / jnp.sqrt(var + EPS) * scale + bias, 0)
  return out, mean, var


def inputs(shape, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=shape) * 3 + 1
  return (jnp.asarray(x), jnp.asarray(rng.uniform(0.5, 2, shape[-1])),
          jnp.asarray(rng.normal(size=shape[-1])))


@pytest.mark.parametrize("shape", [(6, 5, 4, 3), (17, 8)])
def test_value_and_gradient_equal_autodiff_of_the_formulas(shape):
  with jax.enable_x64():
    x, scale, bias = inputs(shape)
    rng = np.random.default_rng(1)
    # Cotangents on the output and on the returned statistics (the running
    # averages use them; their gradient path must be right too).
    c_out, c_mean, c_var = (jnp.asarray(rng.normal(size=s))
                            for s in (shape, shape[-1:], shape[-1:]))

    def loss(fn):
      return lambda *a: sum(jnp.sum(o * c) for o, c in zip(fn(*a), (c_out, c_mean, c_var)))

    ours = lambda x_, s_, b_: batch_norm_relu(x_, s_, b_, None, EPS)
    # One program per side (eager, every op would compile on its own).
    both = lambda fn: jax.jit(lambda *a: (fn(*a), jax.grad(loss(fn), argnums=(0, 1, 2))(*a)))
    (values, got), (want, expected) = (both(fn)(x, scale, bias) for fn in (ours, reference))
    for value, w in zip(values, want):
      np.testing.assert_allclose(value, w, rtol=1e-12, atol=1e-12)
    for g, e in zip(got, expected):
      np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-10)


def test_module_equals_flax_batchnorm_then_relu():
  class Plain(nn.Module):
    train: bool

    @nn.compact
    def __call__(self, x):
      return nn.relu(layers.batch_norm(self.train, None, jnp.float64)(name="bn")(x))

  class Fused(nn.Module):
    train: bool

    @nn.compact
    def __call__(self, x):
      return layers.batch_norm_relu(self.train, None, jnp.float64)(name="bn")(x)

  with jax.enable_x64():
    x, _, _ = inputs((8, 4, 4, 5))
    variables, fused_init = (init_variables(m(False), x) for m in (Plain, Fused))
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, fused_init)
    variables = jax.tree.map(lambda a: a + jnp.asarray(
        np.random.default_rng(2).uniform(0.1, 0.5, a.shape)), variables)
    for train in (True, False):
      outs = [jax.jit(lambda v, a, m=m: m(train).apply(v, a, mutable=["batch_stats"]))(
          variables, x) for m in (Plain, Fused)]
      (p_out, p_stats), (f_out, f_stats) = outs
      np.testing.assert_allclose(f_out, p_out, rtol=1e-11, atol=1e-12)
      for a, b in zip(jax.tree.leaves(f_stats), jax.tree.leaves(p_stats)):
        np.testing.assert_allclose(a, b, rtol=1e-11)
    cotangent = jnp.asarray(np.random.default_rng(3).normal(size=x.shape))

    def grads(module):
      def loss(params, x_):
        out, _ = module(True).apply({"params": params,
                                     "batch_stats": variables["batch_stats"]}, x_,
                                    mutable=["batch_stats"])
        return jnp.sum(out * cotangent)
      return jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], x)

    for a, b in zip(jax.tree.leaves(grads(Fused)), jax.tree.leaves(grads(Plain))):
      np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def test_bfloat16_inputs_keep_their_dtype():
  x, scale, bias = (a.astype(jnp.float32) for a in inputs((4, 3, 3, 2)))
  out, grad = jax.jit(jax.value_and_grad(lambda x_: jnp.sum(batch_norm_relu(
      x_, scale, bias)[0].astype(jnp.float32))))(x.astype(jnp.bfloat16))
  assert grad.dtype == jnp.bfloat16
  expected = jax.jit(jax.grad(lambda x_: jnp.sum(reference(x_, scale, bias)[0])))(x)
  np.testing.assert_allclose(grad.astype(jnp.float32), expected, rtol=0.05, atol=0.05)
