"""Whole runs through main.py: progress and TensorBoard output, SIGKILL + resume
reproduces the uninterrupted results, and `load_encoder` serves the trained model."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.runs import (EVAL_EVERY, LOG_EVERY, SCORES, STEPS, checkpoint_steps, command,
                        copy_of, kill_after_first_checkpoint, results, run, run_command,
                        shared_reference)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return shared_reference(tmp_path_factory)


def test_progress_metrics_and_tensorboard(reference):
  workdir, stdout, stderr = reference
  assert "step/s" in stderr or "s/step" in stderr                # tqdm rate (and ETA)
  assert "step 10: " in stderr and "level_loss/0=" in stderr
  assert "linear probe: category" in stdout
  assert checkpoint_steps(workdir)[-1] == STEPS
  last = results(workdir)["last_logged"]           # the last logged step, in results.json
  assert last["step"] == STEPS and set(last) >= {"loss", "level_dims/0", "level_loss/1"}
  assert f"level_dims/0={last['level_dims/0']:.4g}" in stderr
  # The run's speed against this CPU's float32 matmul, timed in the same process.
  speed = results(workdir)["throughput"]
  assert speed["examples_per_sec"] == results(workdir)["examples_per_sec"]
  assert len(speed["matmul_gflops_per_sec_range"]) == 2 and speed["model_flops_per_view"] > 0
  assert speed["of_matmul"] == pytest.approx(
      speed["model_gflops_per_sec"] / speed["matmul_gflops_per_sec"])
  assert f"{100 * speed['of_matmul']:.1f}% of this CPU's float32 matmul" in stdout
  # TensorBoard reads back every logged step, and the last one's values.
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util
  events = event_accumulator.EventAccumulator(str(Path(workdir) / "tensorboard"))
  events.Reload()                                  # clu writes scalars as tensor summaries
  evaluated = {f"eval/{name}/{h}" for name in ("linear_probe_accuracy", "knn_accuracy")
               for h in range(2)}
  assert set(events.Tags()["tensors"]) == (set(last) - {"step"}) | evaluated
  for tag in evaluated:
    assert [e.step for e in events.Tensors(tag)] == list(range(EVAL_EVERY, STEPS, EVAL_EVERY))
  for tag in ("loss", "level_dims/0", "level_loss/1"):
    series = events.Tensors(tag)
    assert [e.step for e in series] == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    np.testing.assert_allclose(float(tensor_util.make_ndarray(series[-1].tensor_proto)),
                               last[tag], rtol=1e-6)


def evaluations(workdir):
  return json.loads((Path(workdir) / "evaluations.json").read_text())["evaluations"]


def test_evaluations_during_training(reference):
  """eval.every_steps=10: the encoder evaluated at steps 10 and 20 (not at the
  last, which results.json holds), each with every level's scores."""
  got = evaluations(reference[0])
  assert [e["step"] for e in got] == list(range(EVAL_EVERY, STEPS, EVAL_EVERY))
  for e in got:
    assert len(e["linear_probe_accuracy"]) == len(e["knn_accuracy"]) == 2
    assert np.isfinite(e["train_loss"])
  assert got[0]["train_loss"] != got[1]["train_loss"] != results(reference[0])["train_loss"]


def test_sigkill_after_first_checkpoint_then_resume(reference, tmp_path):
  workdir = tmp_path / "killed"
  killed_at = kill_after_first_checkpoint(
      command(workdir, f"--config.eval.every_steps={EVAL_EVERY}")[2:], workdir)
  assert killed_at and killed_at[-1] < STEPS, killed_at      # really interrupted mid-training
  assert not (workdir / "results.json").exists()
  rerun = run(workdir, f"--config.eval.every_steps={EVAL_EVERY}")
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert "resuming from the checkpoint at step" in rerun.stderr
  expected, got = results(reference[0]), results(workdir)
  for key in SCORES:
    assert got[key] == expected[key], key
  for mine, theirs in zip(evaluations(workdir), evaluations(reference[0]), strict=True):
    for key in ("step", "linear_probe_accuracy", "knn_accuracy", "train_loss"):
      assert mine[key] == theirs[key], key


def test_load_encoder_reproduces_the_evaluated_embeddings(reference):
  from hmlc_jax import evaluate, workdir as files
  from hmlc_jax.data import load_dataset
  import ml_collections
  workdir = reference[0]
  encode = files.load_encoder(str(workdir))
  config = ml_collections.ConfigDict(results(workdir)["config"])
  data = load_dataset(config.dataset)
  out = encode(data.test_x)
  assert out["representation"].shape == (len(data.test_x), 4 * config.model.width)
  assert out["embedding"].shape == (len(data.test_x), config.model.projection_dim)
  np.testing.assert_allclose(evaluate.embedding_variance(np.asarray(out["embedding"])),
                             results(workdir)["embedding_variance"], rtol=1e-5)


def test_eval_mode_reproduces_the_runs_scores(reference, tmp_path):
  from hmlc_jax import workdir as files
  import ml_collections
  workdir = copy_of(reference[0], tmp_path / "run")
  before = results(workdir)
  again = files.evaluate_workdir(ml_collections.ConfigDict(before["config"]), str(workdir))
  for key in SCORES:
    assert again[key] == before[key], key


def test_tsne_mode_draws_one_panel_per_level(reference, tmp_path):
  from PIL import Image
  workdir = copy_of(reference[0], tmp_path / "run")
  run = run_command("main.py", ["--config=configs/hdigits_ghmlc.py:smoke",
                                f"--workdir={workdir}", "--mode=tsne"])
  assert run.returncode == 0, run.stderr[-2000:]
  assert f"wrote {workdir}/tsne.png" in run.stdout
  with Image.open(os.path.join(workdir, "tsne.png")) as image:
    assert image.size == (352, 704)            # 1 method column x 2 level rows, 3.2 in at 110 dpi


def test_levels_diagnostic_reports_groups_beside_the_tree(reference, tmp_path):
  from hmlc_jax import workdir as files
  workdir = str(copy_of(reference[0], tmp_path / "run"))
  report = files.levels_workdir(workdir, max_points=200)
  assert report["label_depth"] == 2 and report["level_names"] == ["category", "class"]
  assert 1 <= report["groups"] == len(report["components"]) <= 8
  assert json.load(open(os.path.join(workdir, "levels.json")))["groups"] == report["groups"]


def test_learning_curve_tool_reads_the_evaluations(reference, tmp_path):
  """tools/learning_curve.py: steps 10, 20 (evaluations.json) and 30 (results.json),
  their scores as the run wrote them, and the first step within the tolerance of
  the finest level's best."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "learning_curve", Path(__file__).resolve().parents[1] / "tools" / "learning_curve.py")
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  curve = tool.read_curve(str(reference[0]))
  assert curve["steps"] == [10, 20, 30]
  assert curve["linear_probe_accuracy"][-1] == results(reference[0])["linear_probe_accuracy"]
  assert curve["knn_accuracy"][0] == evaluations(reference[0])[0]["knn_accuracy"]
  finest = [a[-1] for a in curve["linear_probe_accuracy"]]
  best = curve["steps"][finest.index(max(finest))]
  assert tool.chosen_step(curve, tolerance=0.0) == best
  assert tool.chosen_step(curve, tolerance=100.0) == 10
  tool.main([f"--runs=a:{reference[0]}", f"--out={tmp_path}", "--choose"])
  assert (tmp_path / "curve.png").stat().st_size > 0 and "| a |" in (tmp_path / "curve.md").read_text()
