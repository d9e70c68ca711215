"""The ablation runner: variant parsing, validation-only scoring, the table
against the per-run results, resume, and bad variants."""
import json

import ml_collections
import numpy as np
import pytest

from hmlc_jax import ablation, sweeps
from tests.runs import STEPS, run_command


def run_ablation(out, *extra):
  return run_command("hmlc_jax.ablation", [
      "--suite=hdigits", f"--out={out}", "--smoke", "--set=tensorboard=False",
      f"--set=checkpoint_every_steps={STEPS // 2}", "--set=throughput=False", *extra])


def test_parse_and_split_variants():
  assert sweeps.parse_variant("default") == {}
  assert sweeps.parse_variant("gmm.num_iters=3+gmm.mask_grad=soft+augment.crop_scale=(0.9,1)"
                                ) == {"gmm.num_iters": 3, "gmm.mask_grad": "soft",
                                      "augment.crop_scale": (0.9, 1)}
  assert ablation.split_variants("default,a=(1,2),b=x+c=3") == ["default", "a=(1,2)",
                                                                "b=x+c=3"]
  with pytest.raises(ValueError, match="FIELD=VALUE"):
    sweeps.parse_variant("gmm.num_iters")


def test_apply_overrides_sets_nested_fields_and_rejects_unknown_ones():
  config = ml_collections.ConfigDict(dict(temperature=0.1, gmm=dict(order="descending")))
  sweeps.apply_overrides(config, {"gmm.order": "ascending", "temperature": 0.5})
  assert config.gmm.order == "ascending" and config.temperature == 0.5
  for field in ("gmm.orders", "gmn.order", "temperature.x"):
    with pytest.raises(ValueError, match="not a config field"):
      sweeps.apply_overrides(config, {field: 1})


def test_smoke_ablation_table_validation_and_resume(tmp_path):
  variants = "--variants=default,method=hmce+eval.knn_k=3"
  # The run tests' step count (tests/runs.py): the default variant's train step is
  # then the shared reference run's program, and the other's the comparison
  # test's HMCE step (an evaluation field changes no train step).
  run = run_ablation(tmp_path, variants, f"--steps={STEPS}")
  assert run.returncode == 0, run.stderr[-3000:]
  summary = json.loads((tmp_path / "ablation.json").read_text())
  assert list(summary["variants"]) == ["default", "method=hmce+eval.knn_k=3"]
  for variant, name, method, knn_k in (
      ("default", "default_seed0", "ghmlc", 5),
      ("method=hmce+eval.knn_k=3", "method_hmce_eval.knn_k_3_seed0", "hmce", 3)):
    result = json.loads((tmp_path / "runs" / name / "results.json").read_text())
    assert result["eval_split"] == "validation" and result["steps"] == STEPS
    assert result["config"]["method"] == method
    assert result["config"]["eval"]["knn_k"] == knn_k
    stats = summary["variants"][variant]["linear_probe_accuracy"]
    np.testing.assert_allclose(stats["mean"], result["linear_probe_accuracy"], rtol=1e-12)
  assert "| `method=hmce+eval.knn_k=3` |" in (tmp_path / "ablation.md").read_text()
  rerun = run_ablation(tmp_path, variants, f"--steps={STEPS}")
  assert rerun.returncode == 0 and rerun.stdout.count("finished earlier, skipping") == 2
