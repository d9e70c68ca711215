"""The input pipeline: batch s is a pure function of (seed, s); the grain stream
gives exactly the in-memory batches; folder images decoded on the fly equal
the ones decoded at load; each process reads its own disjoint share."""
import numpy as np

from hmlc_jax.data import load_dataset
from hmlc_jax.data.pipeline import LazyImages, StepBatch, train_batches
from tests.test_data_folder import folder_config, write_tree


def config_for(dataset, **fields):
  from configs import common
  c = common.base_config("supcon")
  c.dataset = dataset
  c.update(batch_size=8, seed=3, **fields)
  return c


def test_streamed_batches_equal_the_in_memory_ones(tmp_path):
  root = write_tree(tmp_path, per_leaf=4)
  memory = load_dataset(folder_config(root, channels=3))
  lazy = load_dataset(folder_config(root, channels=3, stream=True, stream_threads=2,
                                    prefetch=3))
  assert isinstance(lazy.train_x, LazyImages) and lazy.train_x.shape == memory.train_x.shape
  np.testing.assert_array_equal(lazy.train_x[np.array([5, 0, 5])], memory.train_x[[5, 0, 5]])
  np.testing.assert_array_equal(lazy.test_x[2:7], memory.test_x[2:7])
  start, stop = 2, 9                         # a resumed run: from step 2, past an epoch's end
  expected = list(train_batches(memory, config_for(folder_config(root)), start, stop))
  streamed = list(train_batches(lazy, config_for(folder_config(root, stream=True)), start, stop))
  assert len(streamed) == len(expected) == stop - start
  for got, want in zip(streamed, expected):
    assert got.keys() == want.keys()
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_each_process_reads_a_disjoint_share_of_every_batch():
  x = np.arange(40)[:, None].astype(np.uint8)
  y = np.stack([np.arange(40) // 20, np.arange(40)], 1).astype(np.int32)
  whole = StepBatch(x, y, seed=1, batch_size=8, process_index=0, process_count=1,
                    local_devices=1)
  shares = [StepBatch(x, y, seed=1, batch_size=8, process_index=p, process_count=2,
                      local_devices=1) for p in (0, 1)]
  for step in range(12):
    parts = [share(step) for share in shares]
    seen = [set(part["x"].ravel().tolist()) for part in parts]
    assert not seen[0] & seen[1]
    np.testing.assert_array_equal(np.concatenate([p["x"][0] for p in parts]),
                                  whole(step)["x"][0])
    np.testing.assert_array_equal(np.concatenate([p["position"][0] for p in parts]),
                                  np.arange(8))


def test_lazy_images_decode_only_what_is_asked():
  calls = []

  def decode(files, size, channels):
    calls.append(list(files))
    return np.zeros((len(files), size, size, channels), np.uint8)

  images = LazyImages([f"{i}.png" for i in range(10)], 4, 1, decode)
  view = images.subset(np.array([7, 2, 9]))
  assert calls == [] and view.shape == (3, 4, 4, 1)
  view[1:]
  assert calls == [["2.png", "9.png"]]
  assert images[3].shape == (4, 4, 1) and calls[-1] == ["3.png"]


def test_a_streamed_run_killed_and_resumed_equals_the_in_memory_run(tmp_path):
  """configs/folder_ghmlc.py:smoke on one folder tree, 12 steps: decoded at load
  and trained in-process; streamed through main.py, SIGKILLed after its first
  checkpoint (batches read ahead lost with it), then run again: the same numbers."""
  from tests.runs import SCORES, kill_after_first_checkpoint, results, start_command
  from tests.smoke import run_and_check, smoke_config
  root = write_tree(tmp_path / "tree", per_leaf=6)
  fields = {"dataset.path": root, "dataset.image_size": 16, "num_train_steps": 12,
            "checkpoint_every_steps": 4}
  memory = run_and_check(smoke_config("folder_ghmlc", **fields), tmp_path / "memory",
                         num_levels=3)
  workdir = tmp_path / "streamed"
  args = ["--config=configs/folder_ghmlc.py:smoke", f"--workdir={workdir}",
          "--config.tensorboard=False", "--config.throughput=False",
          "--config.dataset.stream=True", "--config.dataset.prefetch=4"] + [
              f"--config.{k}={v}" for k, v in fields.items()]
  killed_at = kill_after_first_checkpoint(args, workdir)
  assert killed_at and killed_at[-1] < 12, killed_at         # really interrupted mid-training
  rerun = start_command("main.py", args).finish()
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert "resuming from the checkpoint at step" in rerun.stderr
  streamed = results(workdir)
  for key in SCORES:
    assert streamed[key] == memory[key], key
