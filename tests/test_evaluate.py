"""Evaluation: kNN and variance against NumPy oracles, probe against scikit-learn,
and the probe's choices never look at the test split."""
import jax
import ml_collections
import numpy as np
from sklearn.linear_model import LogisticRegression

from hmlc_jax import evaluate, features


def probe_config(**kw):
  c = dict(probe_epochs=20, probe_learning_rate=1e-2, probe_batch_size=64,
           probe_weight_decays=(0.0, 1e-3, 1e-1), probe_val_fraction=0.2,
           knn_k=5, knn_temperature=0.07)
  c.update(kw)
  return ml_collections.ConfigDict(c)


def blobs(rng, n, classes=4, dim=8, spread=1.5):
  centres = rng.normal(size=(classes, dim)) * 2
  y = rng.integers(0, classes, n)
  return (centres[y] + spread * rng.normal(size=(n, dim))).astype(np.float32), y.astype(np.int32)


def test_linear_probe_matches_sklearn_logistic_regression():
  rng = np.random.default_rng(0)
  x, y = blobs(rng, 900)
  train_x, test_x = evaluate.standardize(x[:600], x[600:])
  ours = evaluate.linear_probe(train_x, y[:600], test_x, y[600:], 4, probe_config(), seed=0)
  sk = LogisticRegression(C=10.0, max_iter=2000).fit(train_x, y[:600])
  reference = sk.score(test_x, y[600:])
  assert 0.5 < reference < 0.99              # a task that is neither trivial nor hopeless
  assert abs(ours["accuracy"] - reference) <= 0.03, (ours, reference)


def test_probe_settings_do_not_depend_on_test_labels():
  rng = np.random.default_rng(1)
  x, y = blobs(rng, 500)
  train_x, test_x = evaluate.standardize(x[:400], x[400:])
  a = evaluate.linear_probe(train_x, y[:400], test_x, y[400:], 4, probe_config(), seed=3)
  shuffled = rng.permutation(y[400:])
  b = evaluate.linear_probe(train_x, y[:400], test_x, shuffled, 4, probe_config(), seed=3)
  for key in ("weight_decay", "epochs", "val_accuracy"):
    assert a[key] == b[key]
  np.testing.assert_array_equal(a["predictions"], b["predictions"])


def knn_oracle(train, train_y, query, classes, k, t):
  u = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
  sims = u(query).astype(np.float64) @ u(train).astype(np.float64).T
  preds = []
  for row in sims:
    top = np.argsort(-row, kind="stable")[:k]
    votes = np.zeros(classes)
    for j in top:
      votes[train_y[j]] += np.exp(row[j] / t)
    preds.append(np.argmax(votes))
  return np.array(preds)


def test_knn_matches_oracle():
  rng = np.random.default_rng(2)
  train, train_y = blobs(rng, 300, classes=5)
  query, query_y = blobs(rng, 70, classes=5)
  cfg = probe_config(knn_k=7, knn_temperature=0.1)
  expected = np.mean(knn_oracle(train, train_y, query, 5, 7, 0.1) == query_y)
  assert evaluate.knn_accuracy(train, train_y, query, query_y, 5, cfg) == expected


def test_knn_accuracies_vote_every_level_with_the_same_neighbours():
  rng = np.random.default_rng(5)
  train, fine = blobs(rng, 300, classes=6)
  query, query_fine = blobs(rng, 70, classes=6)
  # parent-local ids: the coarse label is fine // 3, and fine ids repeat under each parent
  train_y = np.stack([fine // 3, fine % 3], axis=1)
  query_y = np.stack([query_fine // 3, query_fine % 3], axis=1)
  cfg = probe_config(knn_k=7, knn_temperature=0.1)
  got, top = evaluate.knn_accuracies(train, train_y, query, query_y, [2, 3], cfg)
  assert top.shape == (70, 3)                               # the finest level's ranking
  for h, classes in enumerate([2, 3]):
    expected = np.mean(knn_oracle(train, train_y[:, h], query, classes, 7, 0.1) == query_y[:, h])
    assert got[h] == expected


def test_hierarchical_consistency_counts_fine_under_coarse():
  train_y = np.array([[0, 0], [0, 1], [1, 2], [1, 3]])
  coarse = np.array([0, 0, 1, 1, 0])
  fine = np.array([1, 2, 3, 0, 0])            # 2 and 3 sit under 1; 0 and 1 under 0
  # pairs: (0,1) ok, (0,2) no, (1,3) ok, (1,0) no, (0,0) ok
  assert evaluate.hierarchical_consistency([coarse, fine], train_y) == 3 / 5


def test_embedding_variance_is_trace_of_covariance_of_unit_vectors():
  rng = np.random.default_rng(4)
  z = rng.normal(size=(200, 16)) + 2.0
  unit = z / np.linalg.norm(z, axis=1, keepdims=True)
  expected = np.trace(np.cov(unit.T, ddof=0))
  np.testing.assert_allclose(evaluate.embedding_variance(z), expected, rtol=1e-10)
  assert evaluate.embedding_variance(np.tile(z[:1], (50, 1))) < 1e-12   # collapse: 0


def final_accuracy(x, labels, weights, eval_x, eval_y, epochs, batch_size):
  """Accuracy on (eval_x, eval_y) of the one-model probe after its last epoch."""
  unit = (np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32))
  *_, params = evaluate.probe_epochs(
      features.ArrayTable(x), labels, weights, [0.0], jax.random.key(0), num_classes=4,
      epochs=epochs, batch_size=batch_size, learning_rate=0.05, scale=unit)
  top = evaluate.probe_predictions(params, features.ArrayTable(eval_x),
                                   np.arange(len(eval_x)), unit, 1)
  return float(np.mean(top[0, :, 0] == eval_y))


def test_softmax_regression_fits_separable_data():
  rng = np.random.default_rng(5)
  x, y = blobs(rng, 256, spread=0.05)
  assert final_accuracy(x, y, np.ones(256, np.float32), x, y, epochs=5, batch_size=32) == 1.0


def test_held_out_rows_do_not_train_the_probe():
  rng = np.random.default_rng(6)
  x, y = blobs(rng, 128, spread=0.05)
  flipped = (y + 1) % 4                     # rows with weight 0 carry wrong labels
  weights = (np.arange(128) < 64).astype(np.float32)
  labels = np.where(weights > 0, y, flipped)
  assert final_accuracy(x, labels, weights, x, y, epochs=10, batch_size=16) == 1.0


# ----------------------------------------------------------------------------
# Hierarchical metrics against plain-Python definitions on random trees


def oracle_height(a, b):
  """Height of the lowest common ancestor: levels below the longest shared prefix."""
  for h, (x, y) in enumerate(zip(a, b)):
    if x != y:
      return len(a) - h
  return 0


def oracle_severity(labels, predicted):
  heights = [oracle_height(t, p) for t, p in zip(labels.tolist(), predicted.tolist())
             if t[-1] != p[-1]]
  return sum(heights) / len(heights) if heights else 0.0


def oracle_hdist(labels, scores, class_paths, k):
  total = 0.0
  for truth, row in zip(labels.tolist(), scores.tolist()):
    best = sorted(range(len(row)), key=lambda c: (-row[c], c))[:k]
    total += sum(oracle_height(truth, class_paths[c].tolist()) for c in best) / k
  return total / len(labels)


def random_tree_case(seed, levels, branching):
  from tests.helpers import tree_labels
  rng = np.random.default_rng(seed)
  labels = tree_labels(rng, 200, levels, branching)
  leaves = branching ** levels
  class_paths = np.stack([[leaf // branching ** (levels - 1 - h) for h in range(levels)]
                          for leaf in range(leaves)]).astype(np.int32)
  scores = np.round(rng.normal(size=(200, leaves)), 1)   # rounded: ties happen
  noisy = np.where(rng.uniform(size=200) < 0.6, labels[:, -1], rng.integers(0, leaves, 200))
  return labels, class_paths[noisy], scores, class_paths


def test_hierarchical_metrics_match_the_definitions_on_random_trees():
  for seed, levels, branching in ((0, 2, 3), (1, 3, 2), (2, 4, 3), (3, 7, 2)):
    labels, predicted, scores, class_paths = random_tree_case(seed, levels, branching)
    assert evaluate.mistake_severity(labels, predicted) == oracle_severity(labels, predicted)
    for k in (1, 5):
      np.testing.assert_allclose(
          evaluate.hierarchical_distance_at_k(labels, scores, class_paths, k),
          oracle_hdist(labels, scores, class_paths, k), rtol=1e-12)
    np.testing.assert_array_equal(evaluate.class_paths_of(labels, class_paths), class_paths)


def test_hierarchical_metrics_at_their_ends():
  labels = np.array([[0, 0, 0], [1, 3, 7]])
  assert evaluate.mistake_severity(labels, labels) == 0.0            # no mistake
  siblings = np.array([[0, 0, 1], [1, 3, 6]])
  assert evaluate.mistake_severity(labels, siblings) == 1.0
  strangers = np.array([[1, 3, 7], [0, 0, 0]])
  assert evaluate.mistake_severity(labels, strangers) == 3.0         # only the root shared
  paths = np.array([[0, 0, 0], [0, 0, 1], [1, 3, 6], [1, 3, 7]])
  scores = np.array([[9.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 9.0]])
  assert evaluate.hierarchical_distance_at_k(labels[:, :], scores, paths, 1) == 0.0
  assert evaluate.hierarchical_distance_at_k(labels, scores, paths, 2) == 0.5


def test_balanced_accuracy_against_scikit_learn():
  from sklearn.metrics import balanced_accuracy_score
  rng = np.random.default_rng(3)
  labels = rng.choice(5, size=300, p=[0.6, 0.2, 0.1, 0.07, 0.03])
  predictions = np.where(rng.uniform(size=300) < 0.7, labels, rng.integers(0, 5, 300))
  np.testing.assert_allclose(evaluate.balanced_accuracy(labels, predictions),
                             balanced_accuracy_score(labels, predictions), rtol=1e-12)
