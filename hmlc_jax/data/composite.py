"""Two-digit composites: the hierarchical-digits construction of the G-HMLC paper.

A composite shows two handwritten digits on one square canvas:

* the *class* digit, upscaled (bilinear) to a central ``big x big`` square
  (``big`` = the canvas: the whole canvas);
* the *category* digit, at native size at a uniformly random spot; with a
  ``keep_out`` inset, only spots whose patch misses the class digit's square
  shrunk by that many pixels on each side (the small digit sits *around* the
  large one, as in the method paper's Figure 3, and keeps its ink);
* merged by a pixel-wise maximum.

`hdigits` builds them from scikit-learn's 8x8 digits (canvas 32, class digit
16x16 in the centre, the small digit around it), `hmnist` from MNIST's 28x28
digits (the class digit fills the canvas). Composites are balanced over the 100 (category,
class) pairs. Labels are ``[coarse digit, 10 * coarse + fine]``, so they form
a tree (a digit alone would sit under all ten coarse digits); ``level_order``
picks which digit is coarse. The two digits are independent, so either order
is a valid hierarchy, which makes these sets a test of robustness to the
order of levels.
"""
from __future__ import annotations

import numpy as np

from hmlc_jax.data import Dataset
from hmlc_jax.errors import UserInputError

LEVEL_ORDERS = ("category_first", "class_first")


def upscale_matrix(n_in: int, n_out: int) -> np.ndarray:
  """Bilinear interpolation weights ``[n_out, n_in]`` (pixel centres aligned)."""
  centres = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
  weights = 1.0 - np.abs(centres[:, None] - np.arange(n_in)[None, :])
  weights = np.maximum(weights, 0.0)
  return weights / weights.sum(axis=1, keepdims=True)


def split_sources(digits: np.ndarray, test_fraction: float, rng) -> tuple:
  """Per digit, disjoint index sets of source images: (train, test) lists of 10 arrays."""
  train, test = [], []
  for d in range(10):
    idx = rng.permutation(np.flatnonzero(digits == d))
    n_test = int(round(test_fraction * len(idx)))
    test.append(idx[:n_test])
    train.append(idx[n_test:])
  return train, test


def hold_out(sources: list, fraction: float, rng) -> tuple:
  """Splits each digit's index array of ``sources``: (kept, held out) lists of 10 arrays.

  The held-out images make validation composites that share no source image
  with the training composites (``dataset.eval_split="validation"``).
  """
  kept, held = [], []
  for idx in sources:
    idx = rng.permutation(idx)
    n_held = max(1, int(round(fraction * len(idx))))
    held.append(idx[:n_held])
    kept.append(idx[n_held:])
  return kept, held


def sources_by_digit(digits: np.ndarray) -> list:
  """10 index arrays: the images of each digit."""
  return [np.flatnonzero(digits == d) for d in range(10)]


def pick_sources(sources: list, digits: np.ndarray, rng) -> np.ndarray:
  """One random source image index per entry of ``digits`` (uniform within its digit)."""
  sizes = np.array([len(s) for s in sources])
  starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  within = rng.integers(0, sizes[digits])
  return np.concatenate(sources)[starts[digits] + within]


def sample_layout(sources: list, size: int, rng, canvas: int, digit: int,
                  big: int | None = None, keep_out: int | None = None) -> dict:
  """Random composition of ``size`` composites, balanced over the 100 pairs.

  Args:
    sources: 10 index arrays of source images, one per digit.
    size: number of composites.
    rng: numpy Generator.
    canvas: side of the square canvas.
    digit: side of the pasted (category) digit.
    big: side of the central class digit; None: the whole canvas.
    keep_out: None: the small digit may go anywhere; an int: only where its
      patch misses the class digit's square shrunk by this many pixels.

  Returns a dict of int arrays ``[size]``: ``category`` and ``klass`` (the
  two digits), ``big`` and ``small`` (source indices of the class and
  category digit images), ``offsets`` ``[size, 2]`` (top-left row and column
  of the pasted ``digit x digit`` image on the ``canvas`` square), and the
  int ``big_side``.
  """
  big = canvas if big is None else big
  pairs = rng.permutation(np.arange(size) % 100)
  category, klass = pairs // 10, pairs % 10
  big_idx, small = pick_sources(sources, klass, rng), pick_sources(sources, category, rng)
  if keep_out is None:
    offsets = rng.integers(0, canvas - digit + 1, size=(size, 2))
  else:
    spots = surrounding_spots(canvas, digit, big, keep_out)
    offsets = spots[rng.integers(0, len(spots), size=size)]
  return dict(category=category, klass=klass, big=big_idx, small=small, offsets=offsets,
              big_side=big)


def surrounding_spots(canvas: int, digit: int, big: int, inset: int) -> np.ndarray:
  """int ``[S, 2]``: every top-left corner of a ``digit x digit`` patch inside
  the canvas that misses the central ``big x big`` square shrunk by ``inset``."""
  low = (canvas - big) // 2 + inset
  high = (canvas - big) // 2 + big - inset
  corners = np.arange(canvas - digit + 1)
  clear = (corners + digit <= low) | (corners >= high)     # this row (column) range misses
  rows, cols = np.meshgrid(corners, corners, indexing="ij")
  spots = clear[rows] | clear[cols]
  if not spots.any():
    raise ValueError(f"no {digit}x{digit} spot on a {canvas} canvas misses a {big} square")
  return np.stack([rows[spots], cols[spots]], axis=1)


def class_canvas(images: np.ndarray, layout: dict, canvas: int) -> np.ndarray:
  """float ``[size, canvas, canvas]``: each composite's class digit alone,
  upscaled to ``layout["big_side"]`` and centred."""
  side = int(layout.get("big_side", canvas))
  start = (canvas - side) // 2
  pixels = np.zeros((len(layout["big"]), canvas, canvas))
  pixels[:, start:start + side, start:start + side] = upscaled(images[layout["big"]], side)
  return pixels


def upscaled(images: np.ndarray, canvas: int) -> np.ndarray:
  """float ``[n, d, d]`` -> float ``[n, canvas, canvas]``, bilinear."""
  up = upscale_matrix(images.shape[-1], canvas)
  return np.einsum("ij,njk,lk->nil", up, images, up)


def patch_index(offsets: np.ndarray, digit: int) -> tuple:
  """Fancy index of each composite's pasted patch: use as ``canvas[index]``."""
  rows = offsets[:, 0, None] + np.arange(digit)[None, :]               # [size, digit]
  cols = offsets[:, 1, None] + np.arange(digit)[None, :]
  return np.arange(len(offsets))[:, None, None], rows[:, :, None], cols[:, None, :]


def render(images: np.ndarray, layout: dict, canvas: int) -> np.ndarray:
  """The composites of ``layout`` from float ``images`` ``[M, d, d]`` in [0, 1].

  Returns uint8 ``[size, canvas, canvas, 1]``.
  """
  pixels = class_canvas(images, layout, canvas)
  index = patch_index(layout["offsets"], images.shape[-1])
  pixels[index] = np.maximum(pixels[index], images[layout["small"]])
  return np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)[..., None]


def check_level_order(order: str) -> str:
  if order not in LEVEL_ORDERS:
    raise UserInputError(f"dataset.level_order must be one of {list(LEVEL_ORDERS)}, "
                         f"got {order!r}")
  return order


def labels_of(layout: dict, order: str = "category_first") -> np.ndarray:
  """int32 ``[size, 2]``: ``[coarse digit, 10 * coarse + fine]``."""
  coarse, fine = ((layout["category"], layout["klass"]) if order == "category_first"
                  else (layout["klass"], layout["category"]))
  return np.stack([coarse, 10 * coarse + fine], axis=1).astype(np.int32)


def level_names(order: str) -> tuple:
  """The digit each level adds, coarsest first."""
  return ("category", "class") if order == "category_first" else ("class", "category")


def other_digit(layout: dict, order: str) -> tuple:
  """(name, labels ``[size]``) of the fine digit on its own, which no level holds."""
  return ("class", layout["klass"]) if order == "category_first" else ("category",
                                                                       layout["category"])


def check_sizes(train_size: int, test_size: int) -> None:
  for field, value in (("train_size", train_size), ("test_size", test_size)):
    if value < 100:
      raise UserInputError(f"dataset.{field} must be at least 100 (one per leaf path), "
                           f"got {value}")


def composite_dataset(name: str, images: tuple, layout_pair: tuple, canvas: int,
                      order: str) -> Dataset:
  """A `Dataset` of two-digit composites.

  Args:
    name: registry name.
    images: float source images (train, test) ``[M, d, d]`` in [0, 1].
    layout_pair: (train, test) layouts of `sample_layout`.
    canvas: side of the square canvas.
    order: one of `LEVEL_ORDERS`.
  """
  check_level_order(order)
  (train_images, test_images), (train, test) = images, layout_pair
  extra_name, train_extra = other_digit(train, order)
  _, test_extra = other_digit(test, order)
  return Dataset(name=name, kind="image",
                 train_x=render(train_images, train, canvas),
                 train_y=labels_of(train, order),
                 test_x=render(test_images, test, canvas),
                 test_y=labels_of(test, order),
                 num_classes=(10, 100), level_names=level_names(order),
                 extra_labels={extra_name: (train_extra, test_extra, 10)}).validated()
