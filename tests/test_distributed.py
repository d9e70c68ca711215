"""Work done once in a multi-process run (`distributed.lead_first`): process 0
downloads data and moves damaged checkpoints, the others wait and never touch
the shared files. Two processes are simulated: the process index and count,
and the broadcast of process 0's outcome (tests/test_multihost.py runs real
processes)."""
import pytest

from hmlc_jax import distributed
from hmlc_jax.errors import UserInputError


@pytest.fixture
def processes(monkeypatch):
  """Makes this process process ``index`` of 2; process 0's outcome is ``lead_ok``."""
  import jax

  def become(index, lead_ok=True):
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda: index)
    monkeypatch.setattr(distributed, "_lead_says",
                        lambda flag: flag if index == 0 else lead_ok)
  return become


def test_only_process_zero_does_the_work(processes):
  done = []
  processes(1)
  distributed.lead_first("work", lambda: done.append(1))
  assert done == []
  processes(0)
  distributed.lead_first("work", lambda: done.append(0))
  assert done == [0]


def test_a_failure_on_process_zero_stops_every_process(processes):
  processes(0)
  with pytest.raises(OSError, match="disk full"):
    distributed.lead_first("work", lambda: (_ for _ in ()).throw(OSError("disk full")))
  processes(1, lead_ok=False)
  with pytest.raises(UserInputError, match="preparing CIFAR-100 failed on process 0"):
    distributed.lead_first("preparing CIFAR-100", lambda: None)


def test_only_process_zero_downloads_a_data_set(processes, monkeypatch, tmp_path):
  """read_splits: the other process reads without downloading, after process 0."""
  from hmlc_jax.data import tfds_io
  tfds = tfds_io.import_tfds()
  calls = []

  class Builder:
    def download_and_prepare(self):
      calls.append("prepare")

  monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: Builder())
  monkeypatch.setattr(tfds_io, "_is_prepared", lambda *args: False)
  monkeypatch.setattr(tfds_io, "can_reach_downloads", lambda: True)
  monkeypatch.setattr(tfds_io, "_read_without_download", lambda *args: None)
  monkeypatch.setattr(tfds, "load", lambda name, **kw: calls.append(("load", kw["download"])) or [])
  for index, expected in ((1, [("load", False)]), (0, ["prepare", ("load", False)])):
    calls.clear()
    processes(index)
    tfds_io.read_splits("cifar100", "CIFAR-100", str(tmp_path), download=True)
    assert calls == expected, index


def test_only_process_zero_sets_a_damaged_checkpoint_aside(processes, monkeypatch, tmp_path):
  """Both processes try the damaged checkpoint; process 1 leaves the files alone."""
  from hmlc_jax import checkpoints
  monkeypatch.setattr(distributed, "sync", lambda name: None)

  class Manager:
    directory = tmp_path / "checkpoints"
    def reload(self):
      pass
    def all_steps(self):
      return [2]
    def restore(self, step, args):
      raise ValueError("truncated")

  moved = []
  monkeypatch.setattr(checkpoints, "move_aside", lambda manager, step, to: moved.append(step))
  for index, expected in ((1, []), (0, [2])):
    processes(index)
    state = {"w": 1.0}
    assert checkpoints.restore_newest_readable(Manager(), state, str(tmp_path / "aside")) is state
    assert moved == expected, index
