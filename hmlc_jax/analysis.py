"""Analyses of trained embeddings: the t-SNE figure and the feature-group count
(`hmlc_jax.workdir` reads a trained run's embeddings for them).

The t-SNE works on L2-normalised embeddings ``z / |z|`` (the space the
contrastive losses shape). The t-SNE figure follows the G-HMLC
paper's Figure 4: one row per hierarchy level, one column per method, points
coloured by that level's label.

    python main.py --config=configs/hdigits_ghmlc.py --mode=tsne --workdir=runs/x
    python main.py --config=configs/hdigits_ghmlc.py --mode=levels --workdir=runs/x
"""
from __future__ import annotations

import functools

import os
from typing import Dict, Sequence, Tuple

import numpy as np

from hmlc_jax.evaluate import unit_rows


def tsne_points(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
  """2-D t-SNE (scikit-learn, cosine metric, PCA init) of ``[M, D]`` -> ``[M, 2]``."""
  from sklearn.manifold import TSNE
  perplexity = float(min(30.0, max(2.0, (len(embeddings) - 1) / 3)))
  tsne = TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca",
              random_state=seed)
  return tsne.fit_transform(unit_rows(embeddings)).astype(np.float32)


def draw_tsne(panels: Sequence[Tuple[str, np.ndarray, np.ndarray]],
              level_names: Sequence[str], title: str = ""):
  """The Figure-4 grid as a matplotlib figure: row ``r`` colours every panel's
  points by level ``r``'s labels.

  Args:
    panels: per method (column), ``(name, points [M, 2], labels [M, H])``.
    level_names: H row names, coarsest first.
    title: the figure's title ("" for none).

  Returns:
    the figure; ``fig.axes[r * len(panels) + c]`` is row ``r``, column ``c``.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows, cols = len(level_names), len(panels)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
  for c, (name, points, labels) in enumerate(panels):
    for r, level in enumerate(level_names):
      ax = axes[r, c]
      y = labels[:, r]
      cmap = "tab10" if y.max() < 10 else ("tab20" if y.max() < 20 else "nipy_spectral")
      ax.scatter(points[:, 0], points[:, 1], c=y, cmap=cmap, s=4, linewidths=0)
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(name)
      if c == 0:
        ax.set_ylabel(f"coloured by {level}")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return fig


def tsne_figure(panels: Sequence[Tuple[str, np.ndarray, np.ndarray]],
                level_names: Sequence[str], path: str, title: str = "") -> str:
  """`draw_tsne`, saved to ``path`` (PNG); returns ``path``."""
  import matplotlib.pyplot as plt
  fig = draw_tsne(panels, level_names, title)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


@functools.lru_cache(maxsize=None)
def _dp_fit(max_components: int, var_prior: float):
  """``gmm.fit_dp_gmm`` as one compiled program per setting, kept for the next call
  (eager, its operations compile one by one: 3.6 s against 1.3 s)."""
  import jax
  from hmlc_jax import gmm
  return jax.jit(lambda d: gmm.fit_dp_gmm(d, max_components, var_prior=var_prior))


def feature_groups(embeddings: np.ndarray, max_components: int = 8,
                   var_prior: float = 0.1) -> Dict:
  """How many feature groups an embedding ``[N, D]`` carries: a Dirichlet-process
  mixture (``gmm.fit_dp_gmm``) fitted to each dimension's mean ``|z|``, the
  statistic G-HMLC's batch-mode masks split (``gmm.level_masks``).

  Returns ``groups`` (active components), and per active component, largest
  mean first, its ``weight``, ``mean`` and ``dims`` (dimensions it holds).
  """
  import jax.numpy as jnp
  from hmlc_jax import gmm
  data = np.mean(np.abs(np.asarray(embeddings, np.float64)), axis=0)
  fit = _dp_fit(min(max_components, data.size), var_prior)(jnp.asarray(data, jnp.float32))
  weights, means = np.asarray(fit.weights), np.asarray(fit.means)
  held = np.bincount(np.asarray(fit.responsibilities).argmax(-1), minlength=weights.size)
  active = [k for k in np.argsort(-means) if weights[k] >= gmm.ACTIVE_WEIGHT]
  return {"groups": int(fit.num_active),
          "components": [dict(weight=float(weights[k]), mean=float(means[k]),
                              dims=int(held[k])) for k in active]}
