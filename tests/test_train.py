"""Training-loop pieces: data order, schedule, config checks, checkpoint round trip,
the bound on steps dispatched ahead."""
import numpy as np
import pytest

from configs import common
from hmlc_jax import checkpoints, loop, methods, step as step_fn, train_state, workdir as files
from hmlc_jax.data import pipeline
from hmlc_jax.errors import NonFiniteError, UserInputError
from tests.fixtures import section, write_fashion_idx
from tests.runs import environment, run_command
from tests.smoke import learning_config


def test_each_epoch_visits_every_example_once():
  n, b = 50, 8
  stream = np.concatenate([pipeline.batch_indices(3, s, n, b) for s in range(25)])  # 200 = 4 epochs
  for epoch in range(4):
    assert sorted(stream[epoch * n:(epoch + 1) * n]) == list(range(n))
  assert not np.array_equal(stream[:n], stream[n:2 * n])      # a fresh order per epoch


def test_batches_are_a_pure_function_of_seed_and_step():
  a = pipeline.batch_indices(7, 11, 1000, 64)
  assert np.array_equal(a, pipeline.batch_indices(7, 11, 1000, 64))
  assert not np.array_equal(a, pipeline.batch_indices(8, 11, 1000, 64))
  assert not np.array_equal(a, pipeline.batch_indices(7, 12, 1000, 64))


def test_warmup_then_cosine_schedule():
  c = common.base_config("supcon")
  c.update(learning_rate=0.8, warmup_epochs=1.0, batch_size=100, num_train_steps=50)
  _, schedule = train_state.make_optimizer(c, 50, num_train=1000)     # 10 warm-up steps
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(5)), 0.4, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(10)), 0.8, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(30)), 0.4, rtol=1e-5)  # half-way down the cosine
  assert float(schedule(50)) == pytest.approx(0.0, abs=1e-7)


def test_many_queued_steps_with_collectives_finish():
  """300 pmapped steps with an all_gather on 2 CPU devices through the loop's
  `StepsInFlight` (tests/in_flight_check.py). Unbounded (``MAX_STEPS_IN_FLIGHT``
  of 10**9) XLA aborted in the rendezvous after 62 s here."""
  done = run_command("tests.in_flight_check", [], environment(devices=2), timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split() == ["done", "300"]
  assert loop.MAX_STEPS_IN_FLIGHT <= 8          # 32 queued steps aborted, 8 did not


def test_total_steps_from_epochs():
  c = common.base_config("supcon")
  c.update(batch_size=64, num_epochs=2.5, num_train_steps=-1)
  assert train_state.total_steps(c, 1000) == 40                      # ceil(2500 / 64)
  c.num_train_steps = 7
  assert train_state.total_steps(c, 1000) == 7


@pytest.mark.parametrize("field, value, message", [
    ("method", "hmlc", "unknown method"),
    ("optimizer", "rmsprop", "unknown optimizer"),
    ("learning_rate", 0.0, "learning_rate must be positive"),
    ("temperature", -1.0, "temperature must be positive"),
    ("batch_size", 0, "batch_size must be at least 1"),
    ("level_weights", "cubic", "level_weights"),
])
def test_bad_config_fields_are_user_errors(field, value, message):
  from hmlc_jax.data import load_dataset
  c = common.hdigits("ghmlc", "smoke")
  c[field] = value
  with pytest.raises(UserInputError, match=message):
    train_state.check_config(c, load_dataset(c.dataset))


def test_unknown_dataset_is_a_user_error():
  from hmlc_jax.data import load_dataset
  with pytest.raises(UserInputError, match="unknown dataset.name 'mnist'"):
    load_dataset(section("dataset", name="mnist"))


@pytest.mark.parametrize("optimizer", ["sgd", "lars", "adamw"])
def test_each_optimizer_takes_a_finite_descent_step(optimizer):
  import jax
  import jax.numpy as jnp
  c = common.base_config("supcon")
  c.update(optimizer=optimizer, learning_rate=0.1, warmup_epochs=0.0, batch_size=10)
  tx, _ = train_state.make_optimizer(c, num_steps=10, num_train=100)
  params = {"w": jnp.ones((3, 4)), "b": jnp.zeros(4)}
  loss = lambda p: jnp.sum((p["w"] - 2.0) ** 2) + jnp.sum((p["b"] + 1.0) ** 2)
  state = tx.init(params)
  updates, state = tx.update(jax.grad(loss)(params), state, params)
  new = jax.tree.map(lambda p, u: p + u, params, updates)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(new))
  assert float(loss(new)) < float(loss(params))


def test_non_finite_state_is_never_saved(tmp_path):
  import jax.numpy as jnp
  import optax
  c = common.hdigits("ghmlc", "smoke")
  zero = jnp.int32(0)
  state = train_state.TrainState.create(apply_fn=None, params={"w": jnp.ones(3)}, tx=optax.sgd(0.1),
                                  batch_stats={}, last_loss=jnp.float32(1.0), skips=zero,
                                  skip_run=zero, longest_skip_run=zero,
                                  first_skip_step=jnp.int32(-1))
  manager = files.checkpoint_manager(str(tmp_path), c.keep_checkpoints)
  checkpoints.save_finite(manager, state.replace(step=1))
  manager.wait_until_finished()
  for bad in (state.replace(step=2, params={"w": jnp.array([1.0, jnp.nan, 1.0])}),
              state.replace(step=2, params={"w": jnp.array([jnp.nan], jnp.bfloat16)}),
              state.replace(step=2, last_loss=jnp.float32(jnp.inf))):
    with pytest.raises(NonFiniteError, match="last checkpoint: step 1"):
      checkpoints.save_finite(manager, bad)
  manager.wait_until_finished()
  assert manager.all_steps() == [1]
  manager.close()


@pytest.fixture(scope="module")
def fashion_data(tmp_path_factory):
  """The learning test's data (tests/test_learning.py), loaded once for every method."""
  from hmlc_jax.data import load_dataset
  root = write_fashion_idx(tmp_path_factory.mktemp("fashion"), sizes=(600, 300))
  return root, load_dataset(learning_config("supcon", root).dataset)


@pytest.mark.parametrize("method", list(methods.METHODS))      # a new entry is tested too
def test_train_step_of_every_method(method, fashion_data):
  """One pmapped step of every method with the learning test's config (three
  levels; the same compiled steps as that test's runs): the loss is finite and
  positive, every parameter moves, the per-level metrics are there. (The whole
  loop runs end to end for one config per data-set family.)"""
  import jax
  root, data = fashion_data
  config = learning_config(method, root)
  run = train_state.setup(config, data, axis_name=step_fn.AXIS)
  state = run.state
  step = step_fn.pmapped_train_step(run.model, config, data.kind, run.schedule)
  before = jax.tree.map(np.asarray, state.params)
  new, metrics = step(step_fn.replicate(state), pipeline.device_batch(data, config, 0))
  metrics = {k: float(v[0]) for k, v in metrics.items()}
  assert np.isfinite(metrics["loss"]) and metrics["loss"] > 0 and metrics["grad_norm"] > 0
  assert int(new.step[0]) == 1 and int(new.skips[0]) == 0
  after = jax.tree.map(lambda a: np.asarray(a[0]), new.params)
  moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), before, after)
  assert all(jax.tree.leaves(moved)), moved
  if method in ("ghmlc", "ahmlc"):
    assert {f"level_{m}/{h}" for m in ("loss", "dims") for h in range(3)} <= set(metrics)


def test_a_skipped_step_moves_the_schedule_on_with_the_step(fashion_data):
  """After a skipped (non-finite) first step, the second step applies and logs
  ``schedule(1)``, the same update as a state that is at step 1 without a skip.
  (When the optimiser counted its own updates, the second step applied
  ``schedule(0) = 0`` while logging ``schedule(1)``, and the cosine never
  reached zero.)"""
  import jax
  root, data = fashion_data
  config = learning_config("supcon", root)
  config.update(optimizer="sgd", momentum=0.0, weight_decay=0.0, warmup_epochs=0.5,
                nan_policy="skip", inject_nonfinite_at_step=1)
  run = train_state.setup(config, data, axis_name=step_fn.AXIS)
  state, schedule = run.state, run.schedule
  assert float(schedule(0)) == 0.0 and float(schedule(1)) > 0.0
  step = step_fn.pmapped_train_step(run.model, config, data.kind, schedule)
  first = lambda tree: jax.tree.map(lambda a: np.asarray(a[0]), tree)
  before = jax.tree.map(np.asarray, state.params)

  skipped, _ = step(step_fn.replicate(state), pipeline.device_batch(data, config, 0))
  assert int(skipped.skips[0]) == 1 and int(skipped.step[0]) == 1
  after_skip, metrics = step(skipped, pipeline.device_batch(data, config, 1))
  np.testing.assert_allclose(float(metrics["learning_rate"][0]), float(schedule(1)), rtol=1e-6)
  moved = first(after_skip.params)
  assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(moved), jax.tree.leaves(before)))

  no_skip, _ = step(step_fn.replicate(state.replace(step=1)), pipeline.device_batch(data, config, 1))
  for a, b in zip(jax.tree.leaves(moved), jax.tree.leaves(first(no_skip.params))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
