"""hdigits: the composites are what DESIGN.md describes, from disjoint sources."""
import numpy as np
import pytest

from hmlc_jax.data import composite, hdigits
from hmlc_jax.errors import UserInputError
from tests.fixtures import section


def small(seed=0, **kw):
  return section("dataset", **{**dict(name="hdigits", seed=seed, train_size=300, test_size=200), **kw})


@pytest.fixture(scope="module")
def data():
  return hdigits.load(small())


def test_shapes_labels_and_balance(data):
  assert data.train_x.shape == (300, 32, 32, 1) and data.train_x.dtype == np.uint8
  assert data.test_x.shape == (200, 32, 32, 1)
  y = data.train_y
  assert y.dtype == np.int32 and np.array_equal(y[:, 0], y[:, 1] // 10)
  assert np.bincount(y[:, 1], minlength=100).tolist() == [3] * 100   # 300 = 3 per path
  assert data.num_classes == (10, 100) and data.level_names == ("category", "class")


def test_deterministic_in_seed():
  a, b, c = hdigits.load(small(0)), hdigits.load(small(0)), hdigits.load(small(1))
  assert np.array_equal(a.train_x, b.train_x) and np.array_equal(a.test_y, b.test_y)
  assert not np.array_equal(a.train_x, c.train_x)


def test_upscale_matrix_is_bilinear():
  up = composite.upscale_matrix(8, 32)
  np.testing.assert_allclose(up.sum(axis=1), 1.0)
  ramp = np.arange(8.0)
  # Linear data stay linear inside the support (output centre c maps to (c+0.5)/4-0.5).
  centres = (np.arange(32) + 0.5) / 4 - 0.5
  inside = (centres >= 0) & (centres <= 7)
  np.testing.assert_allclose((up @ ramp)[inside], centres[inside], atol=1e-12)


def test_train_and_test_sources_are_disjoint_per_digit():
  rng = np.random.default_rng(0)
  digits = np.repeat(np.arange(10), 20)
  train, test = composite.split_sources(digits, 0.3, rng)
  for d in range(10):
    assert not set(train[d]) & set(test[d])
    assert np.all(digits[train[d]] == d) and np.all(digits[test[d]] == d)
    assert len(test[d]) == 6


def test_composite_is_max_of_upscaled_class_and_pasted_category():
  images = np.zeros((10, 8, 8))
  for d in range(10):                       # digit d: a constant image of value d/10
    images[d] = d / 10
  sources = [np.array([d]) for d in range(10)]
  layout = composite.sample_layout(sources, 100, np.random.default_rng(3), 32, 8)
  x, y = composite.render(images, layout, 32), composite.labels_of(layout)
  for i in range(100):
    category, klass = y[i, 0], y[i, 1] % 10
    pixels = x[i, :, :, 0].astype(float)
    big, top = klass / 10 * 255, max(category, klass) / 10 * 255
    at_top = np.abs(pixels - top) <= 1
    assert np.all(at_top | (np.abs(pixels - big) <= 1))
    if category > klass:                    # exactly one visible 8x8 patch
      rows, cols = np.nonzero(at_top)
      assert at_top.sum() == 64 and np.ptp(rows) == 7 and np.ptp(cols) == 7


def test_too_small_sizes_are_user_errors():
  with pytest.raises(UserInputError, match="dataset.train_size"):
    hdigits.load(small(train_size=10))


def test_layout_offsets_locate_the_pasted_digit():
  images = np.zeros((10, 8, 8))
  images[:, 2:6, 2:6] = np.arange(1, 11)[:, None, None] / 10   # digit d: a square of (d+1)/10
  sources = [np.array([d]) for d in range(10)]
  layout = composite.sample_layout(sources, 200, np.random.default_rng(5), 32, 8)
  index = composite.patch_index(layout["offsets"], 8)
  patch = composite.render(images, layout, 32)[..., 0][index].astype(float) / 255
  expected = np.maximum(composite.upscaled(images[layout["big"]], 32)[index],
                        images[layout["small"]])
  np.testing.assert_allclose(patch, expected, atol=0.5 / 255 + 1e-9)
  np.testing.assert_array_equal(composite.labels_of(layout)[:, 0], layout["small"])


def test_surrounding_spots_against_brute_force():
  spots = composite.surrounding_spots(32, 8, 16, 1)
  box = np.zeros((32, 32), bool)
  box[9:23, 9:23] = True                   # the class digit's 16x16 square less a 1-pixel rim
  want = {(r, c) for r in range(25) for c in range(25) if not box[r:r + 8, c:c + 8].any()}
  assert {tuple(s) for s in spots} == want and len(spots) == len(want) == 625 - 21 ** 2
  with pytest.raises(ValueError, match="no 8x8 spot"):
    composite.surrounding_spots(16, 8, 16, 0)


def test_hdigits_small_digit_sits_around_the_central_class_digit():
  """The default build: class digit 16x16 in the centre, nothing outside it;
  the small digit's patch misses the centre less the rim, and its ink is all
  there (the patch equals the small digit wherever the class digit is blank)."""
  images, targets = hdigits.source_images()
  train, _ = hdigits.layouts(small(), targets)
  assert train["big_side"] == hdigits.BIG == 16
  clean = composite.class_canvas(images, train, 32)
  assert not clean[:, :8].any() and not clean[:, 24:].any()
  assert not clean[:, :, :8].any() and not clean[:, :, 24:].any()
  r, c = train["offsets"][:, 0], train["offsets"][:, 1]
  misses = lambda a: (a + 8 <= 9) | (a >= 23)
  assert np.all(misses(r) | misses(c))
  x = composite.render(images, train, 32)[..., 0].astype(float) / 255
  index = composite.patch_index(train["offsets"], 8)
  np.testing.assert_allclose(x[index], np.maximum(
      clean[index], images[train["small"]]), atol=0.5 / 255 + 1e-9)
  ink = images[train["small"]] > 0.5
  assert ((clean[index] > 0.5) & ink).sum() < 0.01 * ink.sum()   # < 1% under the class digit


def test_level_order_swaps_the_digits_roles():
  a = hdigits.load(small())
  b = hdigits.load(small(level_order="class_first"))
  np.testing.assert_array_equal(a.train_x, b.train_x)       # same images
  category, klass = a.train_y[:, 0], a.train_y[:, 1] % 10
  np.testing.assert_array_equal(b.train_y[:, 0], klass)
  np.testing.assert_array_equal(b.train_y[:, 1], 10 * klass + category)
  assert (a.level_names, b.level_names) == (("category", "class"), ("class", "category"))
  np.testing.assert_array_equal(a.extra_labels["class"][0], klass)
  np.testing.assert_array_equal(b.extra_labels["category"][1], a.test_y[:, 0])
  with pytest.raises(UserInputError, match="dataset.level_order"):
    hdigits.load(small(level_order="sideways"))


def test_validation_split_uses_only_held_out_training_sources():
  _, targets = hdigits.source_images()
  train, test = hdigits.layouts(small(), targets)
  fit, val = hdigits.layouts(small(eval_split="validation", validation_fraction=0.2), targets)
  used = lambda layout: set(layout["big"]) | set(layout["small"])
  test_sources = set(np.concatenate(composite.split_sources(
      targets, 0.3, np.random.default_rng(0))[1]))
  assert used(test) <= test_sources                  # the test split as before
  assert not used(val) & used(fit)                   # validation shares no source with fit
  assert not (used(val) | used(fit)) & test_sources  # and neither touches a test image
  assert len(val["category"]) == 200 and len(fit["category"]) == 300


def test_hold_out_takes_a_fraction_of_each_digit():
  sources = [np.arange(10 * d, 10 * d + 10) for d in range(10)]
  kept, held = composite.hold_out(sources, 0.2, np.random.default_rng(0))
  for d in range(10):
    assert len(held[d]) == 2 and len(kept[d]) == 8
    assert sorted(np.concatenate([kept[d], held[d]]).tolist()) == sources[d].tolist()
