"""StopSignals records SIGTERM/SIGINT instead of dying and restores the handlers;
distributed.settings reads flags before the JAX_* environment variables."""
import os
import signal

import pytest

from hmlc_jax import distributed
from hmlc_jax.errors import UserInputError
from hmlc_jax.preemption import StopSignals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_is_recorded_then_handlers_are_restored(sig):
  before = signal.getsignal(sig)
  with StopSignals() as stop:
    assert stop.received is None and stop.any_process() is None
    os.kill(os.getpid(), sig)
    assert stop.received == sig.name and stop.any_process() == sig.name
    assert signal.getsignal(sig) is before        # a second signal acts as before
  assert signal.getsignal(sig) is before


def test_settings_prefer_flags_over_environment(monkeypatch):
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "3")
  assert distributed.settings(None, None, None) == dict(
      coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3)
  assert distributed.settings("h:1", 2, 1) == dict(coordinator_address="h:1", num_processes=2,
                                                   process_id=1)
  monkeypatch.setenv("JAX_PROCESS_ID", "one")
  with pytest.raises(UserInputError, match="JAX_PROCESS_ID must be an integer"):
    distributed.settings(None, None, None)


def test_single_process_is_left_alone(monkeypatch):
  for name in distributed.ENV.values():
    monkeypatch.delenv(name, raising=False)
  assert distributed.initialize() is False
  assert distributed.initialize(num_processes=1) is False


def test_poll_in_one_process_answers_every_step():
  with StopSignals() as stop:
    assert stop.poll(3, 10) is None
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.poll(3, 10) == "SIGTERM"           # not only at multiples of 10
