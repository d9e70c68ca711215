"""Silhouette against a NumPy oracle from its definition; t-SNE and the figure."""
import numpy as np
import pytest

from hmlc_jax import analysis, evaluate


def silhouette_oracle(x, y):
  """Mean over points of (b - a) / max(a, b) with cosine distances (float64)."""
  u = x / np.linalg.norm(x, axis=1, keepdims=True)
  d = 1.0 - u @ u.T
  scores = []
  for i in range(len(x)):
    same = (y == y[i])
    if same.sum() == 1:
      scores.append(0.0)                     # a singleton cluster scores 0 by convention
      continue
    a = d[i, same & (np.arange(len(x)) != i)].mean()
    b = min(d[i, y == k].mean() for k in np.unique(y) if k != y[i])
    scores.append((b - a) / max(a, b))
  return float(np.mean(scores))


def test_silhouette_matches_the_definition():
  rng = np.random.default_rng(0)
  coarse = rng.integers(0, 3, size=60)
  fine = 10 * coarse + rng.integers(0, 4, size=60)
  centres = rng.normal(size=(40, 8))
  x = centres[fine] + 0.5 * rng.normal(size=(60, 8))
  labels = np.stack([coarse, fine], axis=1)
  got = evaluate.silhouette_per_level(x, labels, max_points=100)
  for level in range(2):
    assert got[level] == pytest.approx(silhouette_oracle(x, labels[:, level]), abs=1e-9)
  # Subsampling scores the oracle on the chosen rows; undefined levels give None.
  rows = evaluate.subsample(60, 25, seed=3)
  sub = evaluate.silhouette_per_level(x, labels, max_points=25, seed=3)
  assert sub[0] == pytest.approx(silhouette_oracle(x[rows], coarse[rows]), abs=1e-9)
  assert evaluate.silhouette_per_level(x, np.zeros((60, 1), int)) == [None]


def test_tsne_keeps_separated_clusters_apart(tmp_path):
  rng = np.random.default_rng(1)
  y = np.repeat(np.arange(4), 30)
  x = 5 * np.eye(16)[y] + 0.1 * rng.normal(size=(120, 16))
  points = analysis.tsne_points(x, seed=0)
  assert points.shape == (120, 2) and np.all(np.isfinite(points))
  d = np.linalg.norm(points[:, None] - points[None], axis=-1)
  np.fill_diagonal(d, np.inf)
  assert np.mean(y[np.argmin(d, axis=1)] == y) == 1.0        # nearest neighbour agrees
  labels = np.stack([y // 2, y], axis=1)
  path = analysis.tsne_figure([("a", points, labels), ("b", points, labels)],
                              ["coarse", "fine"], str(tmp_path / "f.png"), title="t")
  from PIL import Image
  with Image.open(path) as image:
    assert image.size == (704, 704)


def test_tsne_rows_are_coloured_by_their_own_level():
  """Each panel plots its own points, coloured by its row's level, with class ids
  that repeat under different parents (a row coloured by another level, or by
  the last column, differs)."""
  rng = np.random.default_rng(0)
  coarse = rng.integers(0, 3, 50)
  labels = np.stack([coarse, rng.integers(0, 4, 50), rng.integers(0, 2, 50)], axis=1)
  panels = [(name, rng.normal(size=(50, 2)).astype(np.float32), labels) for name in "ab"]
  fig = analysis.draw_tsne(panels, ["l0", "l1", "l2"])
  assert len(fig.axes) == 3 * 2
  for r in range(3):
    for c, (name, points, _) in enumerate(panels):
      ax = fig.axes[r * 2 + c]
      (scatter,) = ax.collections
      np.testing.assert_array_equal(scatter.get_offsets(), points)
      np.testing.assert_array_equal(scatter.get_array(), labels[:, r])
      assert ax.get_title() == (name if r == 0 else "")
    assert fig.axes[r * 2].get_ylabel() == f"coloured by l{r}"
  import matplotlib.pyplot as plt
  plt.close(fig)
