"""tools/claims.py: each claim's verdict from hand-made comparison tables."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import claims  # noqa: E402  pylint: disable=wrong-import-position


def entry(means, stds=None):
  stds = stds or [0.001] * len(means)
  return {"mean": means, "std": stds, "values": []}


def write_compare(folder, methods, imbalance_level=None, ordering=None):
  os.makedirs(folder)
  table = {"level_names": ["coarse", "middle", "fine"], "methods": methods,
           "ordering": ordering or {}}
  with open(os.path.join(folder, "results.json"), "w") as f:
    json.dump(table, f)
  if imbalance_level is not None:
    run = os.path.join(folder, "runs", "supcon_seed0")
    os.makedirs(run)
    with open(os.path.join(run, "results.json"), "w") as f:
      json.dump({"config": {"dataset": {"imbalance_level": imbalance_level}}}, f)
  return str(folder)


def method(fine, silhouette, variance, severity, balanced):
  return {"linear_probe_accuracy": entry([0.99, 0.95, fine]),
          "silhouette": entry(silhouette), "embedding_variance": entry([variance]),
          "mistake_severity": {"mean": severity, "std": 0.01, "values": []},
          "linear_probe_balanced_accuracy": entry(balanced)}


def test_verdicts_follow_the_rules(tmp_path):
  balanced = write_compare(tmp_path / "balanced", {
      "supcon": method(0.90, [0.5, 0.5, 0.5], 0.60, 1.50, [0.9, 0.9, 0.9]),
      "hmce": method(0.90, [0.5, 0.5, 0.5], 0.60, 1.50, [0.9, 0.9, 0.9]),
      # G-HMLC: +2.5 points, better silhouettes, more variance, milder mistakes
      "ghmlc": method(0.925, [0.6, 0.6, 0.6], 0.65, 1.30, [0.9, 0.9, 0.9]),
      # A-HMLC: +1.5 points, worse finest silhouette, less variance, harsher mistakes
      "ahmlc": method(0.915, [0.6, 0.6, 0.4], 0.55, 1.60, [0.9, 0.9, 0.9])})
  # level 1 imbalanced: G-HMLC's balanced accuracy is better there, not at level 0
  long_tailed = write_compare(tmp_path / "lt1", {
      "supcon": method(0.9, [0.5] * 3, 0.6, 1.5, [0.95, 0.80, 0.9]),
      "hmce": method(0.9, [0.5] * 3, 0.6, 1.5, [0.95, 0.80, 0.9]),
      "ghmlc": method(0.9, [0.5] * 3, 0.6, 1.5, [0.90, 0.85, 0.9]),
      "ahmlc": method(0.9, [0.5] * 3, 0.6, 1.5, [0.99, 0.79, 0.9])}, imbalance_level=1)
  ordering = write_compare(tmp_path / "order", {}, ordering={
      "ghmlc": {"change": {"category": -0.10, "class": 0.0, "path": -0.10}},
      "ahmlc": {"change": {"category": -0.004, "class": 0.0, "path": -0.005}}})
  claims.main([f"--balanced={balanced}", f"--long_tailed={long_tailed}",
               f"--ordering={ordering}", f"--out={tmp_path / 'claims'}"])
  with open(tmp_path / "claims.json") as f:
    rows = json.load(f)["rows"]
  got = lambda prefix, m: [r["verdict"] for r in rows
                           if r["claim"].startswith(prefix) and r["method"] == m]
  assert got("finest-level probe", "ghmlc") == ["holds"]
  assert got("finest-level probe", "ahmlc") == ["does not hold"]
  assert got("every level separated", "ghmlc") == ["holds"]
  assert got("every level separated", "ahmlc") == ["does not hold"]
  assert got("~3% more embedding variance", "ghmlc") == ["holds"]
  assert got("~3% more embedding variance", "ahmlc") == ["does not hold"]
  # balanced, then the long-tailed table (where nothing differs)
  assert got("milder mistakes", "ghmlc") == ["holds", "does not hold"]
  assert got("milder mistakes", "ahmlc") == ["does not hold", "does not hold"]
  assert got("better on a long-tailed level: 'middle'", "ghmlc") == ["holds"]
  assert got("better on a long-tailed level: 'middle'", "ahmlc") == ["does not hold"]
  assert got("robust to the order", "ghmlc") == ["does not hold"]
  assert got("robust to the order", "ahmlc") == ["holds"]
  assert "**holds**" in (tmp_path / "claims.md").read_text()


def test_a_missing_folder_is_one_line_and_status_2(tmp_path):
  done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "claims.py"),
                         f"--balanced={tmp_path / 'nowhere'}", f"--out={tmp_path / 'c'}"],
                        capture_output=True, text=True, timeout=60)
  assert done.returncode == 2
  assert done.stderr.strip().count("\n") == 0 and "nowhere" in done.stderr


def test_without_long_tailed_runs_that_claim_reads_not_measured(tmp_path):
  same = method(0.9, [0.5] * 3, 0.6, 1.5, [0.9] * 3)
  balanced = write_compare(tmp_path / "balanced", {m: same for m in claims.NAMES})
  claims.main([f"--balanced={balanced}", f"--out={tmp_path / 'claims'}"])
  with open(tmp_path / "claims.json") as f:
    rows = json.load(f)["rows"]
  tail = [r["verdict"] for r in rows if r["claim"].startswith("better on a long-tailed")]
  assert tail == ["not measured", "not measured"]
