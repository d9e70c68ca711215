"""shapes3d: synthetic hierarchical point clouds for offline runs.

Sixteen parametric shapes in four families (level 0 ``family``, level 1
``shape``; shape id ``4 * family + index``):

=========  ==========================================================
family     shapes (per-example random parameters)
=========  ==========================================================
round      sphere (axes 0.9-1.1), dome (hemisphere closed by its base
           disk), torus (tube radius 0.2-0.45 of the ring radius),
           capsule (cylinder half-length 0.6-1.4 radii, round ends)
polyhedra  cube (box, sides 0.7-1 of the longest), tetrahedron and
           octahedron (axes stretched 0.8-1.25, octahedron height
           0.8-1.6), square pyramid (height 0.8-2 of the half-diagonal)
prisms     cylinder (40-gon prism, height 0.8-2.5 radii), cone (height
           1-2.5), triangular prism (height 0.6-2), hexagonal prism
           (height 0.5-2); all closed by their caps
curves     helix (2-4 turns, height 1.5-3), ring (ellipse, axes
           1 : 0.8-1), trefoil knot (height scale 0.5-1.5), figure
           eight (Gerono lemniscate, width 0.6-1.4); each a thin tube
           (Gaussian spread 0.02-0.05 of its size)
=========  ==========================================================

Surfaces are sampled uniformly by area (the sphere before its own axis
scaling); curves uniformly in their parameter. Every cloud has exactly ``num_points``
points. Then, per cloud: each axis is scaled by a log-uniform factor in
``[1/1.5, 1.5]`` (so proportions, not just the shape, vary), the cloud is
rotated about the up axis z by a uniform angle, centred and scaled into the
unit ball, jittered (Gaussian, sigma 0.01) and centred and scaled into the
unit ball again.

The families differ in kind (smooth, faceted, extruded or tapered,
one-dimensional), the shapes within a family in detail, and proportions
overlap across shapes, so the radial profile of a cloud is not enough to
name its shape: trained on 4,000 clouds, a random forest on radial-distance
histograms gets about 85% of the shapes right, a linear model about 45%
(chance: 6.25%).

Splits are balanced over the 16 shapes (sizes differ by at most one) and
drawn from two independent streams of ``dataset.seed``, so train and test
never share a cloud; the whole set is a pure function of its config.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import ml_collections
import numpy as np

from hmlc_jax.data import Dataset, check_labels
from hmlc_jax.data.modelnet40 import unit_ball
from hmlc_jax.errors import UserInputError

FAMILIES = (
    ("round", ("sphere", "dome", "torus", "capsule")),
    ("polyhedra", ("cube", "tetrahedron", "octahedron", "pyramid")),
    ("prisms", ("cylinder", "cone", "triangular_prism", "hexagonal_prism")),
    ("curves", ("helix", "ring", "trefoil", "figure_eight")),
)
FAMILY_NAMES = tuple(name for name, _ in FAMILIES)
SHAPE_NAMES = tuple(shape for _, shapes in FAMILIES for shape in shapes)
NUM_CLASSES = (len(FAMILIES), len(SHAPE_NAMES))
JITTER = 0.01
STRETCH = np.log(1.5)   # every axis of every cloud is scaled by 1/1.35 .. 1.35

Sampler = Callable[[np.random.Generator, int, int], np.ndarray]


# --- Building blocks. Every sampler returns float64 [n, p, 3]. ---

def uniform(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
  """``[n, 1, 1]`` per-example parameters, uniform in ``[low, high)``."""
  return rng.uniform(low, high, size=(n, 1, 1))


def sphere_dirs(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
  """Uniform unit vectors ``[n, p, 3]``."""
  v = rng.normal(size=(n, p, 3))
  return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def mesh_points(verts: np.ndarray, faces: np.ndarray, p: int,
                rng: np.random.Generator) -> np.ndarray:
  """Points uniform by area on triangle meshes sharing one topology.

  Args:
    verts: float ``[n, V, 3]``, one mesh per example.
    faces: int ``[F, 3]`` vertex indices.
    p: points per mesh.

  Returns:
    float ``[n, p, 3]``.
  """
  n, num_faces = verts.shape[0], faces.shape[0]
  tri = verts[:, faces]                                           # [n, F, 3, 3]
  area = np.linalg.norm(np.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]),
                        axis=-1)
  cdf = np.cumsum(area, axis=1) / area.sum(axis=1, keepdims=True)
  rows = np.arange(n)[:, None]
  # One searchsorted for all rows: row i's CDF and draws are shifted into (i, i + 1].
  u = rng.random((n, p))
  face = np.searchsorted((cdf + rows).ravel(), (u + rows).ravel(), side="right")
  face = np.minimum(face.reshape(n, p) - rows * num_faces, num_faces - 1)
  corners = tri[rows, face]                                       # [n, p, 3, 3]
  r1, r2 = np.sqrt(rng.random((n, p, 1))), rng.random((n, p, 1))
  return ((1 - r1) * corners[:, :, 0] + r1 * (1 - r2) * corners[:, :, 1]
          + r1 * r2 * corners[:, :, 2])


def prism_mesh(k: int) -> Tuple[np.ndarray, np.ndarray]:
  """Closed prism over a regular k-gon (circumradius 1, z in [-0.5, 0.5])."""
  angle = 2 * np.pi * np.arange(k) / k
  ring = np.stack([np.cos(angle), np.sin(angle)], axis=1)
  verts = np.concatenate([np.c_[ring, -0.5 * np.ones(k)], np.c_[ring, 0.5 * np.ones(k)],
                          [[0, 0, -0.5], [0, 0, 0.5]]])
  i, j = np.arange(k), (np.arange(k) + 1) % k
  faces = np.concatenate([np.stack([i, j, k + i], 1), np.stack([j, k + j, k + i], 1),
                          np.stack([np.full(k, 2 * k), j, i], 1),
                          np.stack([np.full(k, 2 * k + 1), k + i, k + j], 1)])
  return verts, faces


def pyramid_mesh(k: int) -> Tuple[np.ndarray, np.ndarray]:
  """Closed pyramid over a regular k-gon (circumradius 1, base z=0, apex z=1)."""
  angle = 2 * np.pi * np.arange(k) / k
  verts = np.concatenate([np.c_[np.cos(angle), np.sin(angle), np.zeros(k)],
                          [[0, 0, 1], [0, 0, 0]]])
  i, j = np.arange(k), (np.arange(k) + 1) % k
  faces = np.concatenate([np.stack([i, j, np.full(k, k)], 1),
                          np.stack([j, i, np.full(k, k + 1)], 1)])
  return verts, faces


def stretched_mesh(mesh: Tuple[np.ndarray, np.ndarray], scale: np.ndarray, p: int,
                   rng: np.random.Generator) -> np.ndarray:
  """Samples ``mesh`` with its vertices scaled per example by ``scale [n, 1, 3]``."""
  verts, faces = mesh
  return mesh_points(verts[None] * scale, faces, p, rng)


def axes(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
  """Per-example axis scales ``[n, 1, 3]`` from three ``[n, 1, 1]`` (or broadcastable)."""
  x, y, z = np.broadcast_arrays(x, y, z)
  return np.concatenate([x, y, z], axis=-1)


def tube(rng: np.random.Generator, curve: np.ndarray) -> np.ndarray:
  """Thickens curve points ``[n, p, 3]`` by Gaussian spread 0.02-0.05 of the curve's size."""
  n = curve.shape[0]
  size = np.abs(curve).max(axis=(1, 2), keepdims=True)
  return curve + uniform(rng, n, 0.02, 0.05) * size * rng.normal(size=curve.shape)


# --- Round family. ---

def sphere(rng, n, p):
  return sphere_dirs(rng, n, p) * rng.uniform(0.9, 1.1, size=(n, 1, 3))


def dome(rng, n, p):
  """Upper unit hemisphere (area 2 pi) closed by its base disk (area pi)."""
  on_disk = rng.random((n, p, 1)) < 1 / 3
  shell = sphere_dirs(rng, n, p)
  shell[..., 2] = np.abs(shell[..., 2])
  radius, angle = np.sqrt(rng.random((n, p))), 2 * np.pi * rng.random((n, p))
  disk = np.stack([radius * np.cos(angle), radius * np.sin(angle), np.zeros((n, p))], -1)
  return np.where(on_disk, disk, shell)


def torus(rng, n, p):
  """Ring radius 1, tube radius r; the tube angle follows the area density 1 + r cos v."""
  r = uniform(rng, n, 0.2, 0.45)[..., 0]                          # [n, 1]
  u = 2 * np.pi * rng.random((n, p))
  target = 2 * np.pi * rng.random((n, p))
  v = target.copy()
  for _ in range(8):   # Newton on v + r sin v = target (monotone since r < 1)
    v -= (v + r * np.sin(v) - target) / (1 + r * np.cos(v))
  radial = 1 + r * np.cos(v)
  return np.stack([radial * np.cos(u), radial * np.sin(u), r * np.sin(v)], axis=-1)


def capsule(rng, n, p):
  """Radius 1, cylinder half-length L; a point is on the side with probability L / (L + 1)."""
  half = uniform(rng, n, 0.6, 1.4)[..., 0]                        # [n, 1]
  on_side = rng.random((n, p)) < half / (half + 1)
  cap = sphere_dirs(rng, n, p)
  cap[..., 2] += np.sign(cap[..., 2]) * half
  angle = 2 * np.pi * rng.random((n, p))
  side = np.stack([np.cos(angle), np.sin(angle), half * (2 * rng.random((n, p)) - 1)], -1)
  return np.where(on_side[..., None], side, cap)


# --- Polyhedra family. ---

CUBE = (np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float),
        np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]))
TETRAHEDRON = (np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float),
               np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]]))
OCTAHEDRON = (np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1],
                        [0, 0, -1]], float),
              np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5],
                        [3, 1, 5], [0, 3, 5]]))


def cube(rng, n, p):
  scale = axes(np.ones((n, 1, 1)), uniform(rng, n, 0.7, 1.0), uniform(rng, n, 0.7, 1.0))
  return stretched_mesh(CUBE, scale, p, rng)


def tetrahedron(rng, n, p):
  return stretched_mesh(TETRAHEDRON, rng.uniform(0.8, 1.25, size=(n, 1, 3)), p, rng)


def octahedron(rng, n, p):
  scale = axes(uniform(rng, n, 0.8, 1.25), uniform(rng, n, 0.8, 1.25),
               uniform(rng, n, 0.8, 1.6))
  return stretched_mesh(OCTAHEDRON, scale, p, rng)


def pyramid(rng, n, p):
  scale = axes(np.ones((n, 1, 1)), np.ones((n, 1, 1)), uniform(rng, n, 0.8, 2.0))
  return stretched_mesh(pyramid_mesh(4), scale, p, rng)


# --- Prisms family: extrusions and tapers of a cross-section. ---

def extrusion(k: int, low: float, high: float) -> Sampler:
  """Sampler of a closed k-gon prism with per-example height in ``[low, high)``."""
  mesh = prism_mesh(k)

  def sample(rng, n, p):
    scale = axes(np.ones((n, 1, 1)), np.ones((n, 1, 1)), uniform(rng, n, low, high))
    return stretched_mesh(mesh, scale, p, rng)
  return sample


def cone(rng, n, p):
  scale = axes(np.ones((n, 1, 1)), np.ones((n, 1, 1)), uniform(rng, n, 1.0, 2.5))
  return stretched_mesh(pyramid_mesh(40), scale, p, rng)


# --- Curves family: thin tubes around space curves. ---

def helix(rng, n, p):
  turns, height = uniform(rng, n, 2, 4)[..., 0], uniform(rng, n, 1.5, 3)[..., 0]
  t = rng.random((n, p))
  curve = np.stack([np.cos(2 * np.pi * turns * t), np.sin(2 * np.pi * turns * t),
                    height * (t - 0.5)], axis=-1)
  return tube(rng, curve)


def ring(rng, n, p):
  t = 2 * np.pi * rng.random((n, p))
  minor = uniform(rng, n, 0.8, 1.0)[..., 0]
  return tube(rng, np.stack([np.cos(t), minor * np.sin(t), np.zeros_like(t)], axis=-1))


def trefoil(rng, n, p):
  t = 2 * np.pi * rng.random((n, p))
  height = uniform(rng, n, 0.5, 1.5)[..., 0]
  curve = np.stack([np.sin(t) + 2 * np.sin(2 * t), np.cos(t) - 2 * np.cos(2 * t),
                    -height * np.sin(3 * t)], axis=-1)
  return tube(rng, curve)


def figure_eight(rng, n, p):
  t = 2 * np.pi * rng.random((n, p))
  width = uniform(rng, n, 0.6, 1.4)[..., 0]
  curve = np.stack([np.cos(t), width * np.sin(t) * np.cos(t), np.zeros_like(t)], axis=-1)
  return tube(rng, curve)


SAMPLERS: Dict[str, Sampler] = {
    "sphere": sphere, "dome": dome, "torus": torus, "capsule": capsule,
    "cube": cube, "tetrahedron": tetrahedron, "octahedron": octahedron,
    "pyramid": pyramid, "cylinder": extrusion(40, 0.8, 2.5), "cone": cone,
    "triangular_prism": extrusion(3, 0.6, 2.0), "hexagonal_prism": extrusion(6, 0.5, 2.0),
    "helix": helix, "ring": ring, "trefoil": trefoil, "figure_eight": figure_eight,
}


# --- Assembly. ---

def rotate_z(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Rotates every cloud ``[n, p, 3]`` about z by its own uniform angle."""
  angle = 2 * np.pi * rng.random(points.shape[0])
  c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
  x, y = points[..., 0], points[..., 1]
  return np.stack([c * x - s * y, s * x + c * y, points[..., 2]], axis=-1)


def generate(size: int, num_points: int,
             rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
  """One split, balanced over the shapes, in random order.

  Returns:
    (float32 points ``[size, num_points, 3]`` in the unit ball, int32 labels
    ``[size, 2]`` = ``[family, shape]``).
  """
  shape_ids = rng.permutation(np.arange(size) % len(SHAPE_NAMES))
  points = np.empty((size, num_points, 3))
  for shape_id, name in enumerate(SHAPE_NAMES):
    rows = np.flatnonzero(shape_ids == shape_id)
    if rows.size:
      points[rows] = SAMPLERS[name](rng, rows.size, num_points)
  points *= np.exp(rng.uniform(-STRETCH, STRETCH, size=(size, 1, 3)))
  points = unit_ball(rotate_z(points, rng))
  points = unit_ball(points + JITTER * rng.standard_normal(points.shape, np.float32))
  family = shape_ids // len(FAMILIES[0][1])
  return points, np.stack([family, shape_ids], axis=1).astype(np.int32)


def checked_int(field: str, value, minimum: int) -> int:
  """``value`` of ``dataset.field`` as an int; UserInputError unless an int >= ``minimum``."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise UserInputError(f"dataset.{field} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def load(config: ml_collections.ConfigDict) -> Dataset:
  """Builds shapes3d (fields ``seed``, ``num_points``, ``train_size``, ``test_size``).

  Args:
    config: the ``dataset`` config section. ``num_points`` defaults to 1024,
      ``train_size`` to 4000 and ``test_size`` to 1000 (0 also means the
      default); each split needs at least one cloud per shape (16).

  Returns:
    A `Dataset` of kind "points": x float32 ``[N, num_points, 3]``, labels
    ``[family, shape]`` with ``num_classes=(4, 16)``.
  """
  num_points = checked_int("num_points", config.num_points, 1)
  train_size = checked_int("train_size", config.train_size or 4000, len(SHAPE_NAMES))
  test_size = checked_int("test_size", config.test_size or 1000, len(SHAPE_NAMES))
  seed = checked_int("seed", config.seed, 0)
  train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
  train_x, train_y = generate(train_size, num_points, np.random.default_rng(train_seq))
  test_x, test_y = generate(test_size, num_points, np.random.default_rng(test_seq))
  return Dataset(name="shapes3d", kind="points",
                 train_x=train_x, train_y=check_labels(train_y, NUM_CLASSES, "train"),
                 test_x=test_x, test_y=check_labels(test_y, NUM_CLASSES, "test"),
                 num_classes=NUM_CLASSES, level_names=("family", "shape"))
