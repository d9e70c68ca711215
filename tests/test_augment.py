"""On-device augmentation: exact in its limits, independent of how a batch is split."""
import jax
import jax.numpy as jnp
import numpy as np

from configs import common
from hmlc_jax.data import augment


image_config, point_config = common.image_augment, common.point_augment


def augmented(seed, step, x, kind, cfg, views):
  """``augment_batch`` of the examples at positions 0..n-1, as one compiled
  program (as in the train step; eager, its ops compile one by one)."""
  return np.asarray(jax.jit(lambda a: augment.augment_batch(
      augment.example_keys(seed, step, jnp.arange(len(x)), views), a, kind, cfg))(x))


def images(n=6, c=3, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, c)).astype(np.uint8)


def test_crop_of_a_constant_image_is_constant_inside():
  x = np.full((3, 16, 16, 1), 200, np.uint8)
  cfg = image_config(jitter_prob=0.0, grayscale_prob=0.0)
  out = augmented(0, 1, x, "image", cfg, views=2)
  np.testing.assert_allclose(out[:, :, 2:-2, 2:-2], (200 / 255 - 0.5) / 0.25, atol=1e-5)


def test_resample_matrix_identity_and_flip():
  eye = np.asarray(augment.resample_matrix(0.0, 16.0, 16, 16, False))
  np.testing.assert_allclose(eye, np.eye(16), atol=1e-6)
  flip = np.asarray(augment.resample_matrix(0.0, 16.0, 16, 16, True))
  np.testing.assert_allclose(flip, np.eye(16)[::-1], atol=1e-6)
  # A window [4, 12) upsampled 2x: every output row is a convex combination inside it.
  half = np.asarray(augment.resample_matrix(4.0, 8.0, 16, 16, False))
  np.testing.assert_allclose(half.sum(axis=1), 1.0, atol=1e-6)
  assert np.all(half[:, :3] == 0) and np.all(half[:, 13:] == 0)


def test_views_depend_only_on_seed_step_and_global_position():
  x = images(8)
  cfg = image_config()
  views = jax.jit(lambda step, positions, x: augment.augment_batch(
      augment.example_keys(1, step, positions, 2), x, "image", cfg))
  full = views(7, jnp.arange(8), x)
  # The same examples augmented as two shards of 4 (as on two devices).
  parts = [views(7, jnp.arange(4) + 4 * s, x[4 * s:4 * s + 4]) for s in range(2)]
  np.testing.assert_array_equal(np.asarray(full), np.concatenate([np.asarray(p) for p in parts]))
  other_step = views(8, jnp.arange(8), x)
  assert not np.allclose(full, other_step)
  assert not np.allclose(full[:, 0], full[:, 1])           # the two views differ


def test_grayscale_and_hue_keep_gray_pixels():
  gray = np.repeat(images(2, 1), 3, axis=-1).astype(np.float32) / 255
  np.testing.assert_allclose(augment.grayscale(jnp.asarray(gray)), gray, atol=1e-6)
  np.testing.assert_allclose(augment.rotate_hue(jnp.asarray(gray), 1.0), gray, atol=1e-5)
  rgb = images(2, 3).astype(np.float32) / 255
  back = augment.rotate_hue(augment.rotate_hue(jnp.asarray(rgb), 0.7), -0.7)
  np.testing.assert_allclose(back, rgb, atol=1e-5)


def test_points_rotate_about_the_up_axis_only():
  pts = np.random.default_rng(0).normal(size=(5, 64, 3)).astype(np.float32)
  cfg = point_config(scale=(1.0, 1.0), jitter_sigma=0.0, max_dropout=0.0)
  out = augmented(0, 0, pts, "points", cfg, views=1)[:, 0]
  np.testing.assert_allclose(out[..., 2], pts[..., 2], atol=1e-6)          # up axis kept
  np.testing.assert_allclose(np.linalg.norm(out[..., :2], axis=-1),
                             np.linalg.norm(pts[..., :2], axis=-1), atol=1e-5)
  assert not np.allclose(out, pts, atol=1e-3)


def test_point_dropout_repeats_the_first_point():
  pts = np.random.default_rng(1).normal(size=(4, 256, 3)).astype(np.float32)
  cfg = point_config(scale=(1.0, 1.0), jitter_sigma=0.0, max_dropout=0.875)
  out = augmented(3, 2, pts, "points", cfg, views=1)[:, 0]
  for cloud in out:
    repeats = np.isclose(cloud, cloud[:1], atol=1e-6).all(axis=1).sum()
    assert 1 <= repeats < 256 * 0.9


def test_crop_ratio_one_with_full_area_keeps_the_image():
  """``crop_ratio=(1, 1)`` with area 1 is the identity (hdigits keeps its border
  digit that way); the default aspect range crops even at area 1."""
  image = jnp.asarray(np.random.default_rng(0).uniform(size=(12, 12, 1)), jnp.float32)
  keys = jax.random.split(jax.random.key(1), 8)
  same, cropped = jax.jit(lambda ks: [jax.vmap(
      lambda k: augment.crop_and_flip(k, image, (1.0, 1.0), False, *ratio))(ks)
      for ratio in ([(1.0, 1.0)], [])])(keys)
  np.testing.assert_allclose(same, jnp.broadcast_to(image, same.shape), atol=1e-6)
  assert float(jnp.max(jnp.abs(cropped - image))) > 0.1


def test_keys_of_a_traced_seed_equal_those_of_the_int():
  """The train step takes the seed as data (one compile for every seed of a suite):
  the keys must be those of the seed as a Python int."""
  positions = jnp.arange(5)
  expected = jax.random.key_data(augment.example_keys(7, jnp.int32(3), positions, 2))
  traced = jax.jit(lambda s: jax.random.key_data(augment.example_keys(s, jnp.int32(3),
                                                                      positions, 2)))
  np.testing.assert_array_equal(traced(jnp.int32(7)), expected)
  assert not np.array_equal(traced(jnp.int32(8)), expected)
