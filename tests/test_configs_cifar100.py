"""A CIFAR-100 :smoke config trains and evaluates end to end on tensorflow-datasets
mock data (one method: every method's step is tests/test_train.py's)."""
import pytest
import tensorflow_datasets as tfds

from tests.fixtures import mock_as_dataset, write_cifar_metadata
from tests.smoke import run_and_check, smoke_config


@pytest.fixture(scope="module")
def mock_dir(tmp_path_factory):
  return write_cifar_metadata(tmp_path_factory.mktemp("tfds") / "meta")


def test_cifar100_smoke(mock_dir, tmp_path):
  config = smoke_config("cifar100_ahmlc", **{"dataset.data_dir": mock_dir,
                                                 "dataset.download": False})
  with tfds.testing.mock_data(data_dir=mock_dir, as_dataset_fn=mock_as_dataset):
    run_and_check(config, tmp_path / "run")


def test_bfloat16_resnet_learns_a_fixed_batch(mock_dir):
  """The flagship dtype trains: the CIFAR ResNet-18 config's :smoke variant in
  bfloat16 (the step test_cifar100_smoke compiles), ten pmapped A-HMLC steps on
  one mock batch: every loss finite, the loss falls, parameters stay float32
  while the backbone computes in bfloat16."""
  import jax
  import numpy as np
  from hmlc_jax import step as step_fn, train_state
  from hmlc_jax.data import augment, load_dataset, pipeline
  config = smoke_config("cifar100_ahmlc", **{"dataset.data_dir": mock_dir,
                                             "dataset.download": False, "num_train_steps": 10})
  assert config.model.backbone == "resnet18" and config.model.dtype == "bfloat16"
  with tfds.testing.mock_data(data_dir=mock_dir, as_dataset_fn=mock_as_dataset):
    data = load_dataset(config.dataset)
  run = train_state.setup(config, data, axis_name=step_fn.AXIS)
  model, state = run.model, run.state
  sample = augment.prepare_eval(data.train_x[:1], data.kind)
  assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {np.dtype("float32")}
  out = model.apply({"params": state.params, "batch_stats": state.batch_stats}, sample,
                    train=False, capture_intermediates=True)
  captured = out[1]["intermediates"]["backbone"]
  assert captured["stem_conv"]["__call__"][0].dtype == jax.numpy.bfloat16
  assert captured["__call__"][0].dtype == np.float32    # the representation, for the heads
  step = step_fn.pmapped_train_step(model, config, data.kind, run.schedule)
  replicated, batch, losses = step_fn.replicate(state), pipeline.device_batch(data, config, 0), []
  for _ in range(config.num_train_steps):
    replicated, metrics = step(replicated, batch)
    losses.append(float(metrics["loss"][0]))
  assert np.all(np.isfinite(losses)), losses
  assert np.mean(losses[-3:]) < losses[0] - 0.05, losses
