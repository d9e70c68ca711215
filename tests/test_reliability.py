"""Runs that survive what happens to real runs: SIGTERM (preemption), a corrupted
newest checkpoint, a config that does not match the workdir, non-finite steps."""
import os
import shutil
import signal
import time

import numpy as np
import pytest

from tests.runs import (SCORES, STEPS, checkpoint_steps, command, copy_of, results, run,
                        shared_reference, start_command)


def snapshot(workdir):
  """Every file under ``workdir`` with its size and modification time."""
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      out[path] = (os.path.getsize(path), os.path.getmtime(path))
  return out


def rerun_matches_reference(workdir, reference):
  """Runs the same command again in ``workdir``; its scores must equal ``reference``'s."""
  rerun = run(workdir)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  expected, got = results(reference), results(workdir)
  for key in SCORES:
    assert got[key] == expected[key], key
  return rerun


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The run tests' shared reference (tests/runs.py): read-only, copy to change it."""
  workdir = shared_reference(tmp_path_factory)[0]
  assert checkpoint_steps(workdir) == [24, 27, 30] and STEPS == 30
  return workdir


def test_sigterm_checkpoints_the_step_reached_exits_0_and_resumes_exactly(reference, tmp_path):
  workdir = tmp_path / "preempted"
  proc = start_command("main.py", command(workdir)[2:])
  deadline = time.time() + 240
  while not checkpoint_steps(workdir) and time.time() < deadline and proc.running():
    time.sleep(0.02)
  signalled = time.time()
  os.kill(proc.pid, signal.SIGTERM)
  done = proc.finish()
  stdout, stderr = done.stdout, done.stderr
  assert time.time() - signalled < 60
  assert done.returncode == 0, stderr[-2000:]
  line = [l for l in stdout.splitlines() if l.startswith("SIGTERM: stopped after step")]
  assert line and "run the same command again to resume" in line[0], stdout
  step = int(line[0].split("step ")[1].split()[0])
  assert 3 <= step < 30 and checkpoint_steps(workdir)[-1] == step
  assert not (workdir / "results.json").exists()
  rerun = rerun_matches_reference(workdir, reference)
  assert f"resuming from the checkpoint at step {step}" in rerun.stderr


def truncate_checkpoint(workdir, step):
  """Cuts every file of checkpoint ``step`` to a third of its size."""
  for root, _, files in os.walk(workdir / "checkpoints" / str(step)):
    for name in files:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(max(0, os.path.getsize(os.path.join(root, name)) // 3))


def copy_without_results(reference, workdir):
  copy_of(reference, workdir)
  os.remove(workdir / "results.json")
  return workdir


def test_corrupt_newest_checkpoint_warns_and_resumes_from_the_previous(reference, tmp_path):
  workdir = copy_without_results(reference, tmp_path / "corrupt")
  truncate_checkpoint(workdir, 30)
  rerun = rerun_matches_reference(workdir, reference)
  warnings = [l for l in rerun.stderr.splitlines() if l.startswith("warning: the checkpoint")]
  assert len(warnings) == 1 and "step 30 cannot be read" in warnings[0]
  assert "resuming from the checkpoint at step 27" in rerun.stderr
  assert (workdir / "unreadable_checkpoints" / "30").is_dir()
  assert checkpoint_steps(workdir) == [24, 27, 30]


def test_every_checkpoint_unreadable_warns_for_each_and_trains_from_scratch(reference, tmp_path):
  workdir = copy_without_results(reference, tmp_path / "all_corrupt")
  for step in (24, 27, 30):
    truncate_checkpoint(workdir, step)
  rerun = rerun_matches_reference(workdir, reference)     # seeded: the same run again
  warnings = [l for l in rerun.stderr.splitlines() if l.startswith("warning: the checkpoint")]
  assert [w.split("step ")[1].split()[0] for w in warnings] == ["30", "27", "24"], warnings
  assert "resuming" not in rerun.stderr
  assert sorted(p.name for p in (workdir / "unreadable_checkpoints").iterdir()) == [
      "24", "27", "30"]
  assert checkpoint_steps(workdir) == [24, 27, 30]


def test_incompatible_config_is_refused_unless_overwrite(reference, tmp_path):
  """Every field that shapes the trajectory is checked on resume (the learning
  rate, temperature, seed and GMM settings once continued a run silently)."""
  workdir = tmp_path / "other"
  shutil.copytree(reference, workdir)
  before = snapshot(workdir)
  changes = {"method": "--config.method=supcon", "batch_size": "--config.batch_size=32",
             "model.width": "--config.model.width=8",
             "learning_rate": "--config.learning_rate=0.5",
             "temperature": "--config.temperature=0.2", "seed": "--config.seed=3",
             "gmm.num_iters": "--config.gmm.num_iters=4"}
  for field, change in changes.items():
    refused = run(workdir, change)
    assert refused.returncode == 2, refused.stderr[-2000:]
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and f"trained with {field}=" in lines[0] and "--overwrite" in lines[0]
  evaluated = run(workdir, "--mode=eval", "--config.method=hmce")
  assert evaluated.returncode == 2, evaluated.stderr[-2000:]
  lines = evaluated.stderr.strip().splitlines()
  assert len(lines) == 1 and "cannot evaluate" in lines[0] and "trained with method=" in lines[0]
  assert snapshot(workdir) == before
  fresh = run(workdir, "--config.method=supcon", "--overwrite")
  assert fresh.returncode == 0, fresh.stderr[-2000:]
  assert "resuming" not in fresh.stderr and results(workdir)["config"]["method"] == "supcon"


def test_a_resumed_run_may_train_longer(reference, tmp_path):
  workdir = tmp_path / "longer"
  shutil.copytree(reference, workdir)
  longer = run(workdir, f"--config.num_train_steps={STEPS + 3}")
  assert longer.returncode == 0, longer.stderr[-2000:]
  assert f"resuming from the checkpoint at step {STEPS}" in longer.stderr
  assert results(workdir)["steps"] == STEPS + 3


def test_non_finite_step_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  workdir = tmp_path / "nan"
  stopped = run(workdir, "--config.inject_nonfinite_at_step=8")
  assert stopped.returncode == 1
  lines = stopped.stderr.strip().splitlines()
  assert "Traceback" not in stopped.stderr
  assert lines[-1] == ("error: non-finite loss or gradient at step 8 (not applied); stopped "
                       "by nan_policy=stop; last good checkpoint: step 6")
  evaluated = run(workdir, "--mode=eval")                     # what was kept
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  assert checkpoint_steps(workdir) == [3, 6]
  got = results(workdir)
  assert got["steps"] == 6 and np.isfinite(got["train_loss"])


def test_skip_policy_drops_the_step_and_counts_it(tmp_path):
  inject = ("--config.inject_nonfinite_at_step=8", "--config.nan_policy=skip")
  skipped = run(tmp_path / "skip", *inject)
  assert skipped.returncode == 0, skipped.stderr[-2000:]
  got = results(tmp_path / "skip")
  assert not (tmp_path / "skip" / "tensorboard").exists()     # tensorboard=False (tests/runs.py)
  assert got["skipped_steps"] == 1 and got["steps"] == 30 and np.isfinite(got["train_loss"])
  strict = run(tmp_path / "strict", *inject, "--config.max_skips=1")
  assert strict.returncode == 1
  assert strict.stderr.strip().splitlines()[-1].startswith(
      "error: 1 non-finite steps in a row by step 9 (nan_policy=skip, max_skips=1)")
