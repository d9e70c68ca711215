"""Evaluation of a frozen encoder: linear probe, kNN, consistency, variance, silhouette.

All per level, coarsest first. The linear probe is softmax regression on
standardised representations, trained with Adam in one jitted program for a
grid of weight decays at once; the weight decay and the number of epochs are
chosen on a validation split held out from the training set, the probe is
then refitted on the whole training set with those values, and the test set
is scored once.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from hmlc_jax.data import Dataset, augment


def extract_features(model, variables, inputs: np.ndarray, kind: str, batch_size: int,
                     keep: Sequence[str] = ("representation", "embedding")
                     ) -> Dict[str, np.ndarray]:
  """Eval-mode ``representation`` [N, R] and ``embedding`` [N, D] (float32, host),
  those named in ``keep``. ``inputs`` is read batch by batch (a streamed data
  set's images are decoded per batch; only the features are held).

  Batches are padded to ``batch_size`` so the jitted function compiles once.
  """
  @jax.jit
  def apply(x):
    out = model.apply(variables, augment.prepare_eval(x, kind), train=False)
    return {name: out[name] for name in keep}

  parts = {name: [] for name in keep}
  for start in range(0, len(inputs), batch_size):
    chunk = inputs[start:start + batch_size]
    pad = batch_size - len(chunk)
    padded = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)]) if pad else chunk
    for name, value in jax.device_get(apply(padded)).items():
      parts[name].append(value[:len(chunk)])
  return {name: np.concatenate(values) for name, values in parts.items()}


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


def silhouette_per_level(embeddings: np.ndarray, labels: np.ndarray, max_points: int = 2000,
                         seed: int = 0) -> List[Optional[float]]:
  """Mean silhouette (cosine distance) of the label clusters, per level.

  Args:
    embeddings: float ``[M, D]``.
    labels: int ``[M, H]``.
    max_points: silhouette is O(M^2): score a random subset of this size.

  Returns:
    H floats in [-1, 1]; None for a level with fewer than 2 or as many
    clusters as points (silhouette is undefined there).
  """
  from sklearn.metrics import silhouette_score
  rows = subsample(len(embeddings), max_points, seed)
  unit = unit_rows(embeddings[rows])
  scores = []
  for level in range(labels.shape[1]):
    y = labels[rows, level]
    k = len(np.unique(y))
    scores.append(float(silhouette_score(unit, y, metric="cosine")) if 2 <= k < len(y)
                  else None)
  return scores


def standardize(train: np.ndarray, *others: np.ndarray) -> Tuple[np.ndarray, ...]:
  """Zero mean, unit variance per feature, with the statistics of ``train``."""
  mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
  return tuple((x - mean) / std for x in (train,) + others)


TOP_K = 5      # classes ranked per example for the hierarchical distance@k
UNIT_ROWS_CHUNK = 8192   # rows normalised at a time


def top_classes(scores: jnp.ndarray, k: int) -> jnp.ndarray:
  """int32 ``[..., k]``: the ``k`` best-scored classes, best first, ties to the
  lower index (``k`` argmaxes, each masking the last: cheaper than a sort on CPU)."""
  picks = []
  for _ in range(k):
    best = jnp.argmax(scores, axis=-1)
    picks.append(best)
    scores = jnp.where(jax.nn.one_hot(best, scores.shape[-1], dtype=bool), -jnp.inf, scores)
  return jnp.stack(picks, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("num_classes", "epochs", "batch_size", "top_k"))
def fit_softmax_regression(features, labels, weights, eval_features, eval_labels, eval_valid,
                           weight_decays, key, *, num_classes: int, epochs: int,
                           batch_size: int, learning_rate: float, top_k: int = 1):
  """Adam-trained softmax regression, one model per weight decay, scored every epoch.

  Args:
    features: float32 ``[N, R]``; labels int32 ``[N]``.
    weights: float32 ``[N]``, 1 for the rows that train the probe, 0 for held-out
      rows (so that the selection fit and the final fit share one compilation).
    eval_features, eval_labels: the split scored after every epoch ``[M, R]``, ``[M]``.
    eval_valid: bool ``[M]``, False for padding rows.
    weight_decays: float32 ``[G]`` L2 penalties (``wd / 2 * ||W||^2``).

  Returns:
    (accuracy ``[G, epochs]`` on the valid eval rows after each epoch, the
    ``min(top_k, num_classes)`` best classes ``[G, epochs, M, k]``, best
    first: the prediction is ``[..., 0]``).
  """
  n, r = features.shape
  steps = n // batch_size
  tx = optax.adam(learning_rate)

  def loss(params, x, y, w, wd):
    logits = x @ params["w"] + params["b"]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.sum(w * nll) / jnp.maximum(jnp.sum(w), 1.0) + 0.5 * wd * jnp.sum(params["w"] ** 2)

  def one_model(wd):
    params = {"w": jnp.zeros((r, num_classes)), "b": jnp.zeros((num_classes,))}

    def epoch(carry, epoch_key):
      params, opt = carry
      order = jax.random.permutation(epoch_key, n)[:steps * batch_size].reshape(steps, -1)

      def step(carry, idx):
        params, opt = carry
        grads = jax.grad(loss)(params, features[idx], labels[idx], weights[idx], wd)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), opt), None

      (params, opt), _ = jax.lax.scan(step, (params, opt), order)
      logits = eval_features @ params["w"] + params["b"]
      top = top_classes(logits, min(top_k, num_classes))
      correct = jnp.sum((top[:, 0] == eval_labels) & eval_valid) / jnp.sum(eval_valid)
      return (params, opt), (correct, top)

    _, out = jax.lax.scan(epoch, (params, tx.init(params)), jax.random.split(key, epochs))
    return out

  return jax.vmap(one_model)(weight_decays)


def _padded(x: np.ndarray, rows: int) -> np.ndarray:
  return np.concatenate([x, np.zeros((rows - len(x),) + x.shape[1:], x.dtype)])


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int,
                 config: ml_collections.ConfigDict, seed: int, top_k: int = 1) -> Dict:
  """Chooses weight decay and epochs on a validation split, then scores test once.

  The selection fit trains on the training rows outside the validation split
  and scores the validation rows after every epoch. The final fit trains on
  every training row with the same data order; its state after the chosen
  number of epochs (with the chosen weight decay) scores the test split.

  Args:
    train_x, test_x: standardised features ``[N, R]``, ``[M, R]``.
    train_y, test_y: int labels of one level.

  Returns:
    ``accuracy`` (test), ``predictions`` [M], ``top`` [M, k] (the
    ``top_k`` best classes, best first), ``weight_decay``, ``epochs``,
    ``val_accuracy`` (of the chosen setting).
  """
  rng = np.random.default_rng(seed)
  n_val = max(1, int(round(config.probe_val_fraction * len(train_x))))
  val = rng.permutation(len(train_x))[:n_val]
  fit_weights = np.ones(len(train_x), np.float32)
  fit_weights[val] = 0.0
  rows = max(n_val, len(test_x))
  valid = lambda n: np.arange(rows) < n
  run = functools.partial(
      fit_softmax_regression, train_x, train_y,
      weight_decays=jnp.asarray(config.probe_weight_decays, jnp.float32),
      key=jax.random.key(seed), num_classes=num_classes, epochs=config.probe_epochs,
      batch_size=min(config.probe_batch_size, len(train_x)),
      learning_rate=config.probe_learning_rate, top_k=top_k)
  val_acc, _ = run(fit_weights, _padded(train_x[val], rows), _padded(train_y[val], rows),
                   valid(n_val))
  val_acc = np.asarray(val_acc)
  g, e = np.unravel_index(np.argmax(val_acc), val_acc.shape)   # first best: fewest epochs
  test_acc, preds = run(np.ones(len(train_x), np.float32), _padded(test_x, rows),
                        _padded(test_y, rows), valid(len(test_x)))
  top = np.asarray(preds[g, e, :len(test_x)])
  return {"accuracy": float(test_acc[g, e]), "predictions": top[:, 0], "top": top,
          "weight_decay": float(config.probe_weight_decays[g]), "epochs": int(e) + 1,
          "val_accuracy": float(val_acc[g, e])}


@functools.partial(jax.jit, static_argnames=("k",))
def knn_neighbours(train_feats, query_feats, *, k: int):
  """The ``k`` nearest training rows of each query by cosine similarity.

  Args:
    train_feats: L2-normalised ``[N, R]``; query_feats: L2-normalised ``[M, R]``.

  Returns:
    (similarities ``[M, k]``, training-row indices int32 ``[M, k]``), nearest first.
  """
  return jax.lax.top_k(query_feats @ train_feats.T, k)


@functools.partial(jax.jit, static_argnames=("num_classes", "top_k"))
def knn_vote(sims, neighbour_labels, *, num_classes: int, temperature: float, top_k: int = 1):
  """Weighted vote ``exp(sim / T)`` of the neighbours: the
  ``min(top_k, num_classes)`` classes with the most votes ``[M, k]``, best first
  (ties to the lower index); the prediction is ``[:, 0]``."""
  votes = jax.nn.one_hot(neighbour_labels, num_classes) * jnp.exp(sims / temperature)[..., None]
  return top_classes(votes.sum(axis=1), min(top_k, num_classes))


def knn_accuracies(train_x, train_y, test_x, test_y, num_classes: Sequence[int],
                   config: ml_collections.ConfigDict) -> list:
  """Weighted-kNN test accuracy of every level, on cosine similarity of raw
  representations; the neighbours are found once and vote at each level.

  Args:
    train_x, test_x: ``[N, R]``, ``[M, R]``; train_y, test_y: int ``[N, H]``, ``[M, H]``.
    num_classes: ``H`` class counts.

  Returns:
    ``H`` accuracies (floats), and the finest level's best classes ``[M, k]``.
  """
  train_u = jnp.asarray(np.concatenate([unit_rows(train_x[s:s + UNIT_ROWS_CHUNK]).astype(
      np.float32) for s in range(0, len(train_x), UNIT_ROWS_CHUNK)]))   # no float64 copy of all
  test_u = unit_rows(test_x).astype(np.float32)
  k = min(config.knn_k, len(train_x))
  correct = np.zeros(len(num_classes))
  finest = []
  for s in range(0, len(test_u), 1024):
    sims, idx = knn_neighbours(train_u, test_u[s:s + 1024], k=k)
    idx = np.asarray(idx)
    for h, classes in enumerate(num_classes):
      top = np.asarray(knn_vote(sims, train_y[idx, h], num_classes=classes,
                                temperature=config.knn_temperature,
                                top_k=TOP_K if h == len(num_classes) - 1 else 1))
      correct[h] += np.sum(top[:, 0] == test_y[s:s + 1024, h])
    finest.append(top)
  return [float(c / len(test_u)) for c in correct], np.concatenate(finest)


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


def embedding_variance(embeddings: np.ndarray) -> float:
  """Trace of the covariance of L2-normalised embeddings ``[N, D]`` (in [0, 1])."""
  return float(np.sum(np.var(unit_rows(embeddings), axis=0)))


def evaluate_encoder(model, variables, data: Dataset, config: ml_collections.ConfigDict,
                     seed: int) -> Dict:
  """All evaluation numbers of a frozen encoder for ``results.json``."""
  train = extract_features(model, variables, data.train_x, data.kind, config.batch_size,
                           keep=("representation",))
  test = extract_features(model, variables, data.test_x, data.kind, config.batch_size)
  train_r, test_r = standardize(train["representation"], test["representation"])
  finest = data.num_levels - 1                 # ranks TOP_K classes, for hdist@k
  probes = [linear_probe(train_r, data.train_y[:, h], test_r, data.test_y[:, h], classes,
                         config, seed + h, TOP_K if h == finest else 1)
            for h, classes in enumerate(data.num_classes)]
  knn, knn_top = knn_accuracies(train["representation"], data.train_y, test["representation"],
                                data.test_y, data.num_classes, config)
  extra = {name: linear_probe(train_r, train_y, test_r, test_y, classes, config,
                              seed + data.num_levels + i)["accuracy"]
           for i, (name, (train_y, test_y, classes)) in enumerate(data.extra_labels.items())}
  return {
      "linear_probe_accuracy": [p["accuracy"] for p in probes],
      "linear_probe_balanced_accuracy": [
          balanced_accuracy(data.test_y[:, h], p["predictions"]) for h, p in enumerate(probes)],
      "extra_probe_accuracy": extra,
      "silhouette": silhouette_per_level(test["embedding"], data.test_y,
                                                  seed=seed),
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
