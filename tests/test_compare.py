"""The comparison runner: a smoke suite end to end, its aggregates against the
per-run results, resume by skipping, and bad arguments."""
import json
import os

import numpy as np
import pytest

from tests.runs import STEPS, run_command


def compare(out, *extra):
  return run_command("hmlc_jax.compare", [
      "--suite=hdigits", f"--out={out}", "--set=tensorboard=False", "--set=throughput=False",
      *extra], timeout=400)


# The run tests' step count (tests/runs.py): G-HMLC's train step is then the shared
# reference run's program (every seed's: the seed is data), held by the cache.
# Two checkpoints a run instead of the smoke variant's fifteen.
SUITE = ("--seeds=2", "--methods=hmce,ghmlc", "--swap_methods=ghmlc", "--smoke",
         f"--set=num_train_steps={STEPS}", f"--set=checkpoint_every_steps={STEPS // 2}")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
  out = tmp_path_factory.mktemp("suite")
  run = compare(out, *SUITE)
  assert run.returncode == 0, run.stderr[-3000:]
  return out, run


def per_run(out, name):
  with open(out / "runs" / name / "results.json") as f:
    return json.load(f)


def test_suite_writes_table_json_and_figure(suite):
  out, run = suite
  assert (out / "tsne.png").stat().st_size > 0
  md = (out / "results.md").read_text()
  assert "| hmce |" in md and "| ghmlc | class_first |" in md
  summary = json.loads((out / "results.json").read_text())
  assert summary["runs"] == sorted(["hmce_seed0", "hmce_seed1", "ghmlc_seed0", "ghmlc_seed1",
                                    "ghmlc_seed0_class_first", "ghmlc_seed1_class_first"])
  for method in ("hmce", "ghmlc"):
    runs = [per_run(out, f"{method}_seed{s}") for s in range(2)]
    for key in ("linear_probe_accuracy", "knn_accuracy", "embedding_variance"):
      values = np.array([np.atleast_1d(r[key]) for r in runs], np.float64)
      stats = summary["methods"][method][key]
      np.testing.assert_allclose(stats["mean"], values.mean(0), rtol=1e-12)
      np.testing.assert_allclose(stats["std"], values.std(0, ddof=1), rtol=1e-12)
    groups = [json.loads((out / "runs" / f"{method}_seed{s}" / "levels.json").read_text())
              for s in range(2)]                  # the levels diagnostic of every run
    assert summary["methods"][method]["feature_groups"]["values"] == [g["groups"] for g in groups]
  assert "feature groups" in md


def test_ordering_reads_each_digit_from_either_order(suite):
  out, _ = suite
  summary = json.loads((out / "results.json").read_text())
  default = [per_run(out, f"ghmlc_seed{s}") for s in range(2)]
  swapped = [per_run(out, f"ghmlc_seed{s}_class_first") for s in range(2)]
  assert default[0]["level_names"] == ["category", "class"]
  assert swapped[0]["level_names"] == ["class", "category"]
  table = summary["ordering"]["ghmlc"]
  assert table["category_first"]["category"] == pytest.approx(
      np.mean([r["linear_probe_accuracy"][0] for r in default]))
  assert table["category_first"]["class"] == pytest.approx(
      np.mean([r["extra_probe_accuracy"]["class"] for r in default]))
  assert table["class_first"]["class"] == pytest.approx(
      np.mean([r["linear_probe_accuracy"][0] for r in swapped]))
  assert table["class_first"]["category"] == pytest.approx(
      np.mean([r["extra_probe_accuracy"]["category"] for r in swapped]))
  assert table["change"]["path"] == pytest.approx(
      table["class_first"]["path"] - table["category_first"]["path"])


def test_rerun_skips_finished_runs(suite):
  out, _ = suite
  before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/results.json")}
  figure = (out / "tsne.png").stat().st_mtime_ns
  run = compare(out, *SUITE)
  assert run.returncode == 0, run.stderr[-3000:]
  assert run.stdout.count("finished earlier, skipping") == 6
  assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/results.json")} == before
  assert "tsne.png was drawn from these runs, keeping it" in run.stdout
  assert (out / "tsne.png").stat().st_mtime_ns == figure


def test_tsne_is_drawn_again_when_its_inputs_change(suite, monkeypatch):
  """Another point count, or a retrained seed-0 run: the figure is redrawn (the
  drawing is stubbed here; the rerun test shows the figure kept otherwise)."""
  from hmlc_jax import compare
  out, _ = suite
  drawn = []
  monkeypatch.setattr(compare.files, "sample_test_embeddings",
                      lambda workdir, points: drawn.append((workdir, points)) or 1 / 0)

  def parsed(*extra):
    args = compare.parse_args(["--suite=hdigits", f"--out={out}", *SUITE, *extra])
    compare.check_args(args)
    return args

  args = parsed()
  assert compare.tsne(args, {}).endswith("tsne.png") and drawn == []   # as drawn
  with pytest.raises(ZeroDivisionError):
    compare.tsne(parsed("--tsne_points=7"), {})
  assert drawn[-1][1] == 7
  results = out / "runs" / "hmce_seed0" / "results.json"      # as if retrained
  os.utime(results, ns=(results.stat().st_atime_ns, results.stat().st_mtime_ns + 1))
  try:
    with pytest.raises(ZeroDivisionError):
      compare.tsne(args, {})
  finally:
    os.utime(results, ns=(results.stat().st_atime_ns, results.stat().st_mtime_ns - 1))


def test_set_overrides_every_run_config():
  from hmlc_jax import compare
  args = compare.parse_args(["--suite=modelnet40", "--out=/tmp/x", "--smoke",
                             "--set=dataset.data_dir=/data/mn40", "--set=temperature=0.2"])
  config = compare.run_config(args, dict(method="hmce", seed=2, order=""))
  assert (config.dataset.data_dir, config.temperature, config.seed, config.method) == (
      "/data/mn40", 0.2, 2, "hmce")
  bad = compare.parse_args(["--suite=hdigits", "--out=/tmp/x", "--set=dataset.dir=/x"])
  with pytest.raises(ValueError, match="not a config field"):
    compare.run_config(bad, dict(method="ghmlc", seed=0, order=""))


def test_any_config_file_can_be_compared_or_ablated():
  """--config instead of --suite: every run is that file's config with its own
  method (here the folder data set's, pointed at a user's tree by --set)."""
  from hmlc_jax import ablation, compare
  from hmlc_jax.sweeps import check_source
  args = compare.parse_args(["--config=configs/folder_ghmlc.py", "--out=/tmp/x",
                             "--set=dataset.path=/data/tree", "--methods=supcon,hmce"])
  check_source(args)
  assert args.suite == "folder_ghmlc"
  config = compare.run_config(args, dict(method="hmce", seed=1, order=""))
  assert (config.method, config.dataset.name, config.dataset.path, config.seed) == (
      "hmce", "folder", "/data/tree", 1)
  args = ablation.parse_args(["--config=configs/folder_ghmlc.py:smoke", "--out=/tmp/x",
                              "--set=dataset.path=/data/tree"])
  config = ablation.config_for(args, "method=supcon+temperature=0.2", 0)
  assert (config.method, config.temperature, config.dataset.eval_split) == (
      "supcon", 0.2, "validation")
  assert config.batch_size == compare.load_config(
      compare.parse_args(["--config=configs/folder_ghmlc.py", "--smoke", "--out=/x"]),
      "ghmlc").batch_size                                   # :smoke, as --smoke gives it


def test_level_health_against_chance_and_group_size():
  """A level is healthy when its loss is below (T / T_base) ln(2B - 1) and it has
  at least 4 dimensions; one level failing either makes the run unhealthy."""
  from hmlc_jax.compare import chance_loss, level_health
  config = dict(temperature=0.1, base_temperature=0.07, batch_size=256)
  assert chance_loss(config) == pytest.approx(0.1 / 0.07 * np.log(511))     # 8.909
  result = lambda logged: dict(config=config, linear_probe_accuracy=[0.9, 0.8],
                               last_logged=logged)
  good = {"level_loss/0": 7.0, "level_loss/1": 8.0, "level_dims/0": 4.0, "level_dims/1": 60.0}
  assert level_health(result(good))["healthy"]
  assert not level_health(result(dict(good, **{"level_loss/1": 8.95})))["healthy"]
  assert not level_health(result(dict(good, **{"level_dims/0": 3.0})))["healthy"]
  assert level_health(result({"loss": 7.0}))["levels"] == []           # SupCon: no levels
