"""Evaluation of a frozen encoder: linear probe, kNN, consistency, variance, silhouette.

All per level, coarsest first. The linear probe is softmax regression on
standardised representations, trained with Adam for a grid of weight decays
at once; the weight decay and the number of epochs are chosen on a validation
split held out from the training set, the probe is then refitted on the whole
training set with those values, and the test set is scored once. The probe
and kNN read the training features block by block from a feature table
(`hmlc_jax.features`), so a streamed data set's features can stay on disk.
"""
from __future__ import annotations

import contextlib
import functools
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from hmlc_jax import features
from hmlc_jax.data import Dataset


def unit_rows(x: np.ndarray) -> np.ndarray:
  """float64 rows scaled to unit length (zero rows stay zero)."""
  x = np.asarray(x, np.float64)
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.maximum(norms, 1e-12)


def subsample(n: int, max_points: int, seed: int) -> np.ndarray:
  """Sorted random indices of at most ``max_points`` of ``n`` rows."""
  if n <= max_points:
    return np.arange(n)
  return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


SILHOUETTE_WORKING_MB = 4   # scikit-learn's pairwise distances a few rows at a time, not
                            # all at once (its default allows 1 GB); the scores are the same


def silhouette_per_level(embeddings: np.ndarray, labels: np.ndarray, max_points: int = 2000,
                         seed: int = 0) -> List[Optional[float]]:
  """Mean silhouette (cosine distance) of the label clusters, per level.

  Args:
    embeddings: float ``[M, D]`` (an array or a feature table).
    labels: int ``[M, H]``.
    max_points: silhouette is O(M^2): score a random subset of this size.

  Returns:
    H floats in [-1, 1]; None for a level with fewer than 2 or as many
    clusters as points (silhouette is undefined there).
  """
  import sklearn
  from sklearn.metrics import silhouette_score
  rows = subsample(len(embeddings), max_points, seed)
  unit = unit_rows(as_table(embeddings).take(rows))
  scores = []
  for level in range(labels.shape[1]):
    y = labels[rows, level]
    k = len(np.unique(y))
    with sklearn.config_context(working_memory=SILHOUETTE_WORKING_MB):   # distances in chunks
      scores.append(float(silhouette_score(unit, y, metric="cosine")) if 2 <= k < len(y)
                    else None)
  return scores


def standardize(train: np.ndarray, *others: np.ndarray) -> Tuple[np.ndarray, ...]:
  """Zero mean, unit variance per feature, with the statistics of ``train``."""
  mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
  return tuple((x - mean) / std for x in (train,) + others)


TOP_K = 5      # classes ranked per example for the hierarchical distance@k


def top_classes(scores: jnp.ndarray, k: int) -> jnp.ndarray:
  """int32 ``[..., k]``: the ``k`` best-scored classes, best first, ties to the
  lower index (``k`` argmaxes, each masking the last: cheaper than a sort on CPU)."""
  picks = []
  for _ in range(k):
    best = jnp.argmax(scores, axis=-1)
    picks.append(best)
    scores = jnp.where(jax.nn.one_hot(best, scores.shape[-1], dtype=bool), -jnp.inf, scores)
  return jnp.stack(picks, axis=-1).astype(jnp.int32)


def probe_loss(params, x, y, w, wd):
  """Weighted mean cross-entropy of softmax regression plus ``wd / 2 * ||W||^2``."""
  logits = x @ params["w"] + params["b"]
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  return jnp.sum(w * nll) / jnp.maximum(jnp.sum(w), 1.0) + 0.5 * wd * jnp.sum(params["w"] ** 2)


@functools.partial(jax.jit, static_argnames=("learning_rate",))
def probe_step(state, x, y, w, weight_decays, mean, std, *, learning_rate: float):
  """One Adam step of every probe (one per weight decay) on the same batch.

  Args:
    state: (params, Adam state), each leaf with a leading axis of size ``G``.
    x: float32 ``[B, R]`` raw features, standardised here as ``(x - mean) / std``;
      y: int ``[B]``; w: float32 ``[B]`` row weights.
    weight_decays: float32 ``[G]``.

  Returns:
    the state after the step.
  """
  tx = optax.adam(learning_rate)

  def one_model(state, wd):
    params, opt = state
    grads = jax.grad(probe_loss)(params, (x - mean) / std, y, w, wd)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt

  return jax.vmap(one_model)(state, weight_decays)


@functools.partial(jax.jit, static_argnames=("k",))
def probe_top(params, x, mean, std, *, k: int):
  """int32 ``[G, n, k]``: every probe's ``k`` best classes of the rows ``x`` ``[n, R]``."""
  x = (x - mean) / std
  return jax.vmap(lambda p: top_classes(x @ p["w"] + p["b"], k))(params)


def as_table(x):
  """A feature table (`hmlc_jax.features`) as it is, an array as an `ArrayTable`."""
  return x if hasattr(x, "block") else features.ArrayTable(x)


def probe_epochs(train, labels, weights, weight_decays, key, *, num_classes: int,
                 epochs: int, batch_size: int, learning_rate: float,
                 scale: Tuple[np.ndarray, np.ndarray]) -> Iterator[dict]:
  """Trains one softmax regression per weight decay with Adam; yields their
  parameters (leading axis ``G``) after each epoch.

  Every epoch draws a permutation of the ``N`` training rows from its own key
  (``jax.random.split(key, epochs)``) and takes ``N // batch_size`` batches of
  it, each gathered from the table for its step (`probe_step`), so the
  features need not be in memory and the compiled shapes do not depend on ``N``.

  Args:
    train: feature table ``[N, R]`` (raw; ``scale`` = (mean, std) standardises).
    labels: int ``[N]``; weights: float32 ``[N]``, 1 for the rows that train the
      probe, 0 for held-out rows.
    weight_decays: float ``[G]`` L2 penalties (``wd / 2 * ||W||^2``).
  """
  n, dim = len(train), train.dim
  steps = n // batch_size
  params = {"w": jnp.zeros((len(weight_decays), dim, num_classes)),
            "b": jnp.zeros((len(weight_decays), num_classes))}
  state = (params, jax.vmap(optax.adam(learning_rate).init)(params))
  weight_decays = jnp.asarray(weight_decays, jnp.float32)
  for epoch_key in jax.random.split(key, epochs):
    order = np.asarray(jax.random.permutation(epoch_key, n))[:steps * batch_size]
    for rows in order.reshape(steps, batch_size):
      state = probe_step(state, train.take(rows), labels[rows], weights[rows], weight_decays,
                         *scale, learning_rate=learning_rate)
    yield state[0]


def padded_to(x: np.ndarray, rows: int) -> np.ndarray:
  """``x`` with zero rows appended up to ``rows`` rows (one compiled shape for every block)."""
  return np.concatenate([x, np.zeros((rows - len(x),) + x.shape[1:], x.dtype)]) if len(
      x) < rows else x


def probe_predictions(params, table, rows: np.ndarray, scale, k: int) -> np.ndarray:
  """int32 ``[G, len(rows), k]``: every probe's best classes for the table's ``rows``,
  scored `features.block_rows` rows at a time (the last block padded)."""
  per_call = features.block_rows(table.dim)
  out = []
  for s in range(0, len(rows), per_call):
    x = table.take(rows[s:s + per_call])
    out.append(np.asarray(probe_top(params, padded_to(x, per_call), *scale, k=k))[:, :len(x)])
  return np.concatenate(out, axis=1)


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int,
                 config: ml_collections.ConfigDict, seed: int, top_k: int = 1,
                 scale: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> Dict:
  """Chooses weight decay and epochs on a validation split, then scores test once.

  The selection fit (`probe_epochs`) trains on the training rows outside the
  validation split and scores the validation rows after every epoch. The
  final fit trains on every training row with the same data order; its state
  after the chosen number of epochs (with the chosen weight decay) scores the
  test split.

  Args:
    train_x, test_x: features ``[N, R]``, ``[M, R]`` (arrays or feature tables).
    train_y, test_y: int labels of one level.
    scale: (mean, std) float32 ``[R]``: the probe sees ``(x - mean) / std``
      (None: the features are used as they are).

  Returns:
    ``accuracy`` (test), ``predictions`` [M], ``top`` [M, k] (the
    ``top_k`` best classes, best first), ``weight_decay``, ``epochs``,
    ``val_accuracy`` (of the chosen setting).
  """
  train, test = as_table(train_x), as_table(test_x)
  if scale is None:
    scale = (np.zeros(train.dim, np.float32), np.ones(train.dim, np.float32))
  rng = np.random.default_rng(seed)
  n_val = max(1, int(round(config.probe_val_fraction * len(train))))
  val = rng.permutation(len(train))[:n_val]
  fit_weights = np.ones(len(train), np.float32)
  fit_weights[val] = 0.0
  fit = functools.partial(
      probe_epochs, train, np.asarray(train_y), weight_decays=config.probe_weight_decays,
      key=jax.random.key(seed), num_classes=num_classes, epochs=config.probe_epochs,
      batch_size=min(config.probe_batch_size, len(train)),
      learning_rate=config.probe_learning_rate, scale=scale)
  val_acc = np.stack([
      np.mean(probe_predictions(params, train, val, scale, 1)[..., 0] == train_y[val], axis=1)
      for params in fit(fit_weights)], axis=1)                  # [G, epochs]
  g, e = np.unravel_index(np.argmax(val_acc), val_acc.shape)   # first best: fewest epochs
  for epoch, params in enumerate(fit(np.ones(len(train), np.float32)), start=1):
    if epoch == e + 1:
      break                                                     # the chosen state
  top = probe_predictions(params, test, np.arange(len(test)), scale,
                          min(top_k, num_classes))[g]
  return {"accuracy": float(np.mean(top[:, 0] == test_y)), "predictions": top[:, 0],
          "top": top, "weight_decay": float(config.probe_weight_decays[g]),
          "epochs": int(e) + 1, "val_accuracy": float(val_acc[g, e])}


@functools.partial(jax.jit, static_argnames=("k",))
def knn_merge(sims, neighbours, train_unit, valid, query_unit, offset, *, k: int):
  """The running ``k`` nearest training rows of each query, updated with a block.

  Args:
    sims, neighbours: the best so far, float32 and int32 ``[M, k]``, nearest
      first (-inf similarity: none yet).
    train_unit: L2-normalised training rows ``[n, R]``, the table's rows
      ``offset ...``, of which the first ``valid`` are real (the rest padding);
      query_unit: L2-normalised ``[M, R]``.

  Returns:
    (similarities ``[M, k]``, training-row indices int32 ``[M, k]``), nearest
    first; ties to the lower index, as one `jax.lax.top_k` over all rows.
  """
  block = jnp.where(jnp.arange(len(train_unit)) < valid, query_unit @ train_unit.T, -jnp.inf)
  block_sims, block_rows = jax.lax.top_k(block, min(k, len(train_unit)))
  sims = jnp.concatenate([sims, block_sims], axis=1)
  rows = jnp.concatenate([neighbours, block_rows.astype(jnp.int32) + offset], axis=1)
  best_sims, pick = jax.lax.top_k(sims, k)
  return best_sims, jnp.take_along_axis(rows, pick, axis=1)


@functools.partial(jax.jit, static_argnames=("num_classes", "top_k"))
def knn_vote(sims, neighbour_labels, *, num_classes: int, temperature: float, top_k: int = 1):
  """Weighted vote ``exp(sim / T)`` of the neighbours: the
  ``min(top_k, num_classes)`` classes with the most votes ``[M, k]``, best first
  (ties to the lower index); the prediction is ``[:, 0]``."""
  votes = jax.nn.one_hot(neighbour_labels, num_classes) * jnp.exp(sims / temperature)[..., None]
  return top_classes(votes.sum(axis=1), min(top_k, num_classes))


KNN_QUERIES = 1024       # test rows compared with a block of training rows at a time


def knn_neighbours(train_x, test_x, k: int) -> Tuple[np.ndarray, np.ndarray]:
  """The ``k`` nearest training rows of every test row by cosine similarity.

  Args:
    train_x, test_x: raw features ``[N, R]``, ``[M, R]`` (arrays or feature
      tables): the training rows are read once, a block at a time, and each
      block is compared with every test row, `KNN_QUERIES` at a time.

  Returns:
    (similarities float32 ``[M, k]``, training-row indices int32 ``[M, k]``),
    nearest first.
  """
  train, test = as_table(train_x), as_table(test_x)
  sims = np.full((len(test), k), -np.inf, np.float32)
  neighbours = np.zeros((len(test), k), np.int32)
  rows_per_block = max(k, min(features.block_rows(train.dim),   # and the similarities
                              features.BLOCK_BYTES // (4 * KNN_QUERIES)))
  for start, rows in features.blocks(train, rows_per_block):
    train_unit = jnp.asarray(padded_to(unit_rows(rows).astype(np.float32), rows_per_block))
    for s, queries in features.blocks(test, KNN_QUERIES):
      part = slice(s, s + len(queries))
      query = padded_to(unit_rows(queries).astype(np.float32), KNN_QUERIES)
      best = knn_merge(padded_to(sims[part], KNN_QUERIES), padded_to(neighbours[part], KNN_QUERIES),
                       train_unit, len(rows), query, start, k=k)
      sims[part], neighbours[part] = (a[:len(queries)] for a in jax.device_get(best))
  return sims, neighbours


def knn_accuracies(train_x, train_y, test_x, test_y, num_classes: Sequence[int],
                   config: ml_collections.ConfigDict) -> list:
  """Weighted-kNN test accuracy of every level, on cosine similarity of raw
  representations; the neighbours are found once and vote at each level.

  Args:
    train_x, test_x: ``[N, R]`` (an array or a feature table), ``[M, R]``;
      train_y, test_y: int ``[N, H]``, ``[M, H]``.
    num_classes: ``H`` class counts.

  Returns:
    ``H`` accuracies (floats), and the finest level's best classes ``[M, k]``.
  """
  sims, neighbours = knn_neighbours(train_x, test_x, min(config.knn_k, len(train_x)))
  correct = np.zeros(len(num_classes))
  finest = []
  for s in range(0, len(sims), KNN_QUERIES):
    part = slice(s, s + KNN_QUERIES)
    for h, classes in enumerate(num_classes):
      top = np.asarray(knn_vote(sims[part], train_y[neighbours[part], h], num_classes=classes,
                                temperature=config.knn_temperature,
                                top_k=TOP_K if h == len(num_classes) - 1 else 1))
      correct[h] += np.sum(top[:, 0] == test_y[part, h])
    finest.append(top)
  return [float(c / len(sims)) for c in correct], np.concatenate(finest)


def knn_accuracy(train_x, train_y, test_x, test_y, num_classes: int,
                 config: ml_collections.ConfigDict) -> float:
  """`knn_accuracies` of one level (labels ``[N]``, ``[M]``)."""
  return knn_accuracies(train_x, train_y[:, None], test_x, test_y[:, None], [num_classes],
                        config)[0][0]


def parent_maps(labels: np.ndarray) -> Sequence[np.ndarray]:
  """For each level h >= 1, ``parent[c]`` = the level-(h-1) class above class c (-1 if unseen)."""
  maps = []
  for h in range(1, labels.shape[1]):
    parent = np.full(labels[:, h].max() + 1, -1)
    parent[labels[:, h]] = labels[:, h - 1]
    maps.append(parent)
  return maps


def hierarchical_consistency(predictions: Sequence[np.ndarray], train_y: np.ndarray) -> float:
  """Fraction of examples whose predicted class at every level lies under the predicted
  class of the level above (tree from the training labels)."""
  consistent = np.ones(len(predictions[0]), bool)
  for h, parent in enumerate(parent_maps(train_y), start=1):
    fine = predictions[h]
    known = fine < len(parent)
    above = np.where(known, parent[np.minimum(fine, len(parent) - 1)], -1)
    consistent &= above == predictions[h - 1]
  return float(consistent.mean())


def balanced_accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
  """The mean over the classes present in ``labels`` of each class's recall."""
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  recalls = [np.mean(predictions[labels == c] == c) for c in np.unique(labels)]
  return float(np.mean(recalls))


def lca_height(paths_a: np.ndarray, paths_b: np.ndarray) -> np.ndarray:
  """Height of the lowest common ancestor of label paths, counted from the leaves.

  Args:
    paths_a, paths_b: int ``[..., H]`` label paths, coarsest first (broadcast).

  Returns:
    int ``[...]``: ``H`` minus the length of the longest common prefix; 0 for
    the same leaf, 1 for siblings under one parent, ``H`` when only the root
    is shared.
  """
  same = np.cumprod(np.asarray(paths_a) == np.asarray(paths_b), axis=-1)
  return np.shape(paths_a)[-1] - same.sum(axis=-1)


def mistake_severity(labels: np.ndarray, predicted: np.ndarray) -> float:
  """Mean LCA height of the mistakes (Bertinetto et al., "Making Better Mistakes", 2020).

  Args:
    labels, predicted: int ``[N, H]`` true and predicted label paths, coarsest
      first (a prediction of the finest class is its class's path).

  Returns:
    the mean, over rows whose finest label is wrong, of `lca_height`; 0.0 when
    there is no mistake.
  """
  labels, predicted = np.asarray(labels), np.asarray(predicted)
  wrong = labels[:, -1] != predicted[:, -1]
  return float(lca_height(labels[wrong], predicted[wrong]).mean()) if wrong.any() else 0.0


def hierarchical_distance_at_k(labels: np.ndarray, scores: np.ndarray,
                               class_paths: np.ndarray, k: int) -> float:
  """Mean LCA height between the truth and each of the ``k`` best-scored classes.

  Bertinetto et al.'s hierarchical distance@k: for every row, the ``k``
  classes with the highest scores (ties to the lower index), each one's
  `lca_height` with the true path (0 for the true class), averaged over the
  ``k`` classes and the rows.

  Args:
    labels: int ``[N, H]`` true label paths.
    scores: float ``[N, C]`` scores of the finest classes.
    class_paths: int ``[C, H]`` the label path of each finest class.
    k: how many classes per row (at most ``C``).

  Returns:
    a float in ``[0, H]``.
  """
  top = np.argsort(-np.asarray(scores), axis=-1, kind="stable")[:, :k]
  return hierarchical_distance_of_top(labels, top, class_paths)


def hierarchical_distance_of_top(labels: np.ndarray, top: np.ndarray,
                                 class_paths: np.ndarray) -> float:
  """`hierarchical_distance_at_k` from the top classes ``[N, k]`` themselves."""
  return float(lca_height(np.asarray(labels)[:, None, :],
                          np.asarray(class_paths)[np.asarray(top)]).mean())


def class_paths_of(*label_sets: np.ndarray) -> np.ndarray:
  """int ``[C, H]``: the path of every finest class seen in the label sets
  (``C`` = the largest finest id + 1; a class never seen gets -1s)."""
  labels = np.concatenate(label_sets)
  paths = np.full((labels[:, -1].max() + 1, labels.shape[1]), -1, labels.dtype)
  paths[labels[:, -1]] = labels
  return paths


def embedding_variance(embeddings) -> float:
  """Trace of the covariance of L2-normalised embeddings ``[N, D]`` (an array or a
  feature table, read block by block; in [0, 1])."""
  return float(np.sum(features.moments(as_table(embeddings), unit_rows)[1]))


def evaluate_encoder(model, variables, data: Dataset, config: ml_collections.ConfigDict,
                     seed: int) -> Dict:
  """All evaluation numbers of a frozen encoder for ``results.json``.

  Each split's features are computed once into feature tables
  (`hmlc_jax.features`): in memory, or, for a streamed data set (inputs not
  held in memory), in files in ``config.feature_dir`` (default: the system's
  temporary folder) deleted afterwards. Every metric reads them in blocks, so
  a streamed run's evaluation holds no array that grows with the data set.
  """
  streamed = not isinstance(data.train_x, np.ndarray)
  with contextlib.ExitStack() as stack:
    directory = stack.enter_context(tempfile.TemporaryDirectory(
        prefix="hmlc_features_", dir=config.get("feature_dir") or None)) if streamed else None
    extract = functools.partial(features.tables_of, model, variables, kind=data.kind,
                                batch_size=config.batch_size, directory=directory)
    train = extract(data.train_x, keep=("representation",), prefix="train_")
    test = extract(data.test_x, keep=("representation", "embedding"), prefix="test_")
    for table in (*train.values(), *test.values()):
      stack.callback(table.close)
    return scores_of(train["representation"], test, data, config, seed)


def scores_of(train, test: Dict, data: Dataset, config: ml_collections.ConfigDict,
              seed: int) -> Dict:
  """`evaluate_encoder`'s numbers from the feature tables of the training
  representations and of the test split's ``representation`` and ``embedding``."""
  scale = features.mean_std(train)
  finest = data.num_levels - 1                 # ranks TOP_K classes, for hdist@k
  probe = functools.partial(linear_probe, train, test_x=test["representation"], config=config,
                            scale=scale)
  probes = [probe(train_y=data.train_y[:, h], test_y=data.test_y[:, h], num_classes=classes,
                  seed=seed + h, top_k=TOP_K if h == finest else 1)
            for h, classes in enumerate(data.num_classes)]
  knn, knn_top = knn_accuracies(train, data.train_y, test["representation"], data.test_y,
                                data.num_classes, config)
  extra = {name: probe(train_y=train_y, test_y=test_y, num_classes=classes,
                       seed=seed + data.num_levels + i)["accuracy"]
           for i, (name, (train_y, test_y, classes)) in enumerate(data.extra_labels.items())}
  return {
      "linear_probe_accuracy": [p["accuracy"] for p in probes],
      "linear_probe_balanced_accuracy": [
          balanced_accuracy(data.test_y[:, h], p["predictions"]) for h, p in enumerate(probes)],
      "extra_probe_accuracy": extra,
      "silhouette": silhouette_per_level(test["embedding"], data.test_y, seed=seed),
      "linear_probe_val_accuracy": [p["val_accuracy"] for p in probes],
      "linear_probe_settings": [{"weight_decay": p["weight_decay"], "epochs": p["epochs"]}
                                for p in probes],
      "knn_accuracy": knn,
      "hierarchical_consistency": hierarchical_consistency(
          [p["predictions"] for p in probes], data.train_y),
      "embedding_variance": embedding_variance(test["embedding"]),
      **hierarchical_mistakes(data, {"linear_probe": probes[-1]["top"], "knn": knn_top}),
  }


def hierarchical_mistakes(data: Dataset, tops: Dict[str, np.ndarray]) -> Dict:
  """``mistake_severity``, ``hdist_at_1`` and ``hdist_at_5`` of the finest level's
  classifiers (name -> best classes ``[M, k]``), each a dict by classifier."""
  paths = class_paths_of(data.train_y, data.test_y)
  out = {"mistake_severity": {}, "hdist_at_1": {}, "hdist_at_5": {}}
  for name, top in tops.items():
    out["mistake_severity"][name] = mistake_severity(data.test_y, paths[top[:, 0]])
    out["hdist_at_1"][name] = hierarchical_distance_of_top(data.test_y, top[:, :1], paths)
    out["hdist_at_5"][name] = hierarchical_distance_of_top(data.test_y, top[:, :5], paths)
  return out
