"""Training learns: a short run must beat the same encoder at initialisation.

Every other run test compares runs with each other or checks ranges, so a
`train_step` that never changed the parameters would pass them. Here each
method trains for a few seconds on learnable Fashion-MNIST-shaped IDX files
(`tests.fixtures.fashion_like`: the look of each image follows hfashion's
tree) and its linear probe must beat the untrained encoder's (same seed, same
evaluation) at every level of the tree by `MARGIN`, or by half its error where
the untrained encoder is already within `2 * MARGIN` of perfect.
"""
import numpy as np
import pytest

from hmlc_jax import evaluate, train_state
from hmlc_jax.data import augment, load_dataset
from tests.fixtures import write_fashion_idx
from tests.smoke import learning_config, run_and_check

MARGIN = 0.03          # linear-probe accuracy, at every level


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
  return write_fashion_idx(tmp_path_factory.mktemp("fashion"), sizes=(600, 300))


_UNTRAINED = {}


def untrained_probe(config) -> np.ndarray:
  """Probe accuracies of the encoder at initialisation. The backbone's initial
  parameters depend on the seed and the backbone alone (not on the heads), so
  the methods share one evaluation."""
  key = (config.model.to_json(), config.seed)
  if key not in _UNTRAINED:
    _UNTRAINED[key] = _evaluate_untrained(config)
  return _UNTRAINED[key]


def _evaluate_untrained(config) -> np.ndarray:
  data = load_dataset(config.dataset)
  model = train_state.build_model(config, data)
  sample = augment.prepare_eval(data.train_x[:1], data.kind)
  state = train_state.create_train_state(config, model, sample, len(data.train_x))
  scores = evaluate.evaluate_encoder(model, {"params": state.params,
                                             "batch_stats": state.batch_stats},
                                     data, config.eval, config.seed)
  return np.asarray(scores["linear_probe_accuracy"])


@pytest.mark.parametrize("method", ["supcon", "hmce", "ghmlc", "ahmlc"])
def test_training_beats_the_untrained_encoder(method, fashion_dir, tmp_path):
  config = learning_config(method, fashion_dir)
  trained = np.asarray(run_and_check(config, tmp_path, num_levels=3)["linear_probe_accuracy"])
  untrained = untrained_probe(config)
  needed = untrained + np.minimum(MARGIN, (1.0 - untrained) / 2)
  assert np.all(trained >= needed), (method, trained, untrained)
