"""On-device augmentation in JAX, one independent draw per example and view.

Every random choice comes from a key derived from ``(seed, step, global
position of the example in the batch, view)``, so a batch's augmentation does
not depend on how the batch is split across devices or on whether the run
was resumed.

Images: random resized crop (area ``crop_scale``, aspect ``crop_ratio``,
default 3/4..4/3) and
horizontal flip, done together as two bilinear resampling matrices per
example (matmuls, no gathers: fast on TPU/GPU and CPU); colour jitter
(brightness, contrast, saturation, hue) with probability ``jitter_prob``; grey
scale with probability ``grayscale_prob``. Point clouds: anisotropic scale,
rotation about the up axis, Gaussian jitter and point dropout.
"""
from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
import ml_collections

IMAGE_MEAN, IMAGE_STD = 0.5, 0.25     # fixed input normalisation of [0, 1] pixels


def example_keys(seed, step: jnp.ndarray, positions: jnp.ndarray,
                 num_views: int) -> jnp.ndarray:
  """Keys ``[b, V]`` for the examples at global batch ``positions`` [b] of ``step``
  (``seed``: an int or an int32 scalar array, the same keys either way)."""
  step_key = jax.random.fold_in(jax.random.key(seed), step)
  per_example = jax.vmap(lambda p: jax.random.fold_in(step_key, p))(positions)
  return jax.vmap(lambda k: jax.vmap(lambda v: jax.random.fold_in(k, v))(
      jnp.arange(num_views)))(per_example)


def normalize_images(images: jnp.ndarray) -> jnp.ndarray:
  """uint8 ``[..., H, W, C]`` -> float32 with the fixed mean/std normalisation."""
  return (images.astype(jnp.float32) / 255.0 - IMAGE_MEAN) / IMAGE_STD


def resample_matrix(start, length, size_in: int, size_out: int, flip) -> jnp.ndarray:
  """Bilinear weights ``[size_out, size_in]`` that map the window [start, start+length)."""
  out = (jnp.arange(size_out) + 0.5) / size_out
  out = jnp.where(flip, 1.0 - out, out)
  src = start + out * length - 0.5
  return jnp.maximum(0.0, 1.0 - jnp.abs(src[:, None] - jnp.arange(size_in)[None, :]))


def crop_and_flip(key, image: jnp.ndarray, scale: Tuple[float, float], flip: bool,
                  ratio_range: Tuple[float, float] = (3 / 4, 4 / 3)):
  """Random resized crop of float ``[H, W, C]`` back to ``[H, W, C]``: area a
  fraction in ``scale``, aspect ratio (width / height) log-uniform in ``ratio_range``."""
  h, w = image.shape[:2]
  k_area, k_ratio, k_y, k_x, k_flip = jax.random.split(key, 5)
  area = jax.random.uniform(k_area, minval=scale[0], maxval=scale[1])
  log_ratio = jax.random.uniform(k_ratio, minval=jnp.log(ratio_range[0]),
                                 maxval=jnp.log(ratio_range[1]))
  ratio = jnp.exp(log_ratio)
  crop_h = jnp.minimum(1.0, jnp.sqrt(area / ratio)) * h
  crop_w = jnp.minimum(1.0, jnp.sqrt(area * ratio)) * w
  y0 = jax.random.uniform(k_y) * (h - crop_h)
  x0 = jax.random.uniform(k_x) * (w - crop_w)
  do_flip = jnp.logical_and(flip, jax.random.bernoulli(k_flip))
  rows = resample_matrix(y0, crop_h, h, h, False)
  cols = resample_matrix(x0, crop_w, w, w, do_flip)
  return jnp.einsum("ij,jkc,lk->ilc", rows, image, cols)


def grayscale(image: jnp.ndarray) -> jnp.ndarray:
  """Luma of ``[H, W, C]`` broadcast back to C channels (identity for C = 1)."""
  if image.shape[-1] != 3:
    return image
  luma = image @ jnp.array([0.299, 0.587, 0.114], image.dtype)
  return jnp.broadcast_to(luma[..., None], image.shape)


def rotate_hue(image: jnp.ndarray, angle) -> jnp.ndarray:
  """Hue rotation by ``angle`` radians in YIQ space (RGB only)."""
  if image.shape[-1] != 3:
    return image
  to_yiq = jnp.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                      [0.211, -0.523, 0.312]], image.dtype)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  rotation = jnp.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]], image.dtype)
  return image @ (jnp.linalg.inv(to_yiq) @ rotation @ to_yiq).T


def color_jitter(key, image: jnp.ndarray, strength: Tuple[float, ...]) -> jnp.ndarray:
  """Brightness, contrast, saturation (factors in 1 +- s) and hue (+- s turns) on [0, 1]."""
  brightness, contrast, saturation, hue = strength
  k_b, k_c, k_s, k_h = jax.random.split(key, 4)
  factor = lambda k, s: jax.random.uniform(k, minval=1 - s, maxval=1 + s)
  image = image * factor(k_b, brightness)
  mean = jnp.mean(grayscale(image))
  image = (image - mean) * factor(k_c, contrast) + mean
  gray = grayscale(image)
  image = (image - gray) * factor(k_s, saturation) + gray
  angle = jax.random.uniform(k_h, minval=-hue, maxval=hue) * 2 * jnp.pi
  return jnp.clip(rotate_hue(image, angle), 0.0, 1.0)


def augment_image(key, image: jnp.ndarray, config: ml_collections.ConfigDict) -> jnp.ndarray:
  """uint8 ``[H, W, C]`` -> one normalised float32 view ``[H, W, C]``."""
  k_crop, k_jitter, k_apply, k_gray = jax.random.split(key, 4)
  x = image.astype(jnp.float32) / 255.0
  x = crop_and_flip(k_crop, x, tuple(config.crop_scale), config.flip,
                    tuple(config.crop_ratio))
  jittered = color_jitter(k_jitter, x, tuple(config.color_jitter))
  x = jnp.where(jax.random.bernoulli(k_apply, config.jitter_prob), jittered, x)
  x = jnp.where(jax.random.bernoulli(k_gray, config.grayscale_prob), grayscale(x), x)
  return (x - IMAGE_MEAN) / IMAGE_STD


def augment_points(key, points: jnp.ndarray, config: ml_collections.ConfigDict) -> jnp.ndarray:
  """float ``[P, 3]`` -> one view ``[P, 3]``: scale, up-axis rotation, jitter, dropout."""
  k_scale, k_rot, k_jit, k_ratio, k_drop = jax.random.split(key, 5)
  lo, hi = config.scale
  points = points * jax.random.uniform(k_scale, (3,), minval=lo, maxval=hi)
  angle = jax.random.uniform(k_rot, maxval=2 * jnp.pi)
  up = config.up_axis
  a, b = [axis for axis in range(3) if axis != up]
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  rotated_a = points[:, a] * cos - points[:, b] * sin
  rotated_b = points[:, a] * sin + points[:, b] * cos
  points = points.at[:, a].set(rotated_a).at[:, b].set(rotated_b)
  noise = jax.random.normal(k_jit, points.shape) * config.jitter_sigma
  points = points + jnp.clip(noise, -config.jitter_clip, config.jitter_clip)
  ratio = jax.random.uniform(k_ratio, maxval=config.max_dropout)
  dropped = jax.random.uniform(k_drop, points.shape[:1]) < ratio
  return jnp.where(dropped[:, None], points[:1], points)   # dropped points repeat the first


def augment_batch(keys: jnp.ndarray, inputs: jnp.ndarray, kind: str,
                  config: ml_collections.ConfigDict) -> jnp.ndarray:
  """Augments ``inputs`` [b, ...] with keys ``[b, V]`` into views ``[b, V, ...]``."""
  one = {"image": augment_image, "points": augment_points}[kind]
  per_view = lambda ks, x: jax.vmap(lambda k: one(k, x, config))(ks)
  return jax.vmap(per_view)(keys, inputs)


def prepare_eval(inputs: jnp.ndarray, kind: str) -> jnp.ndarray:
  """Un-augmented model input for evaluation: normalised images, points as is."""
  return normalize_images(inputs) if kind == "image" else inputs.astype(jnp.float32)
