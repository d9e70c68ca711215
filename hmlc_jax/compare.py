"""Comparison runner: methods x seeds on one data set, aggregated, with t-SNE.

    python -m hmlc_jax.compare --suite=hdigits --seeds=3 --out=results/hdigits
    python -m hmlc_jax.compare --suite=hdigits --seeds=2 --out=/tmp/s --smoke
    python -m hmlc_jax.compare --config=configs/folder_ghmlc.py --set=dataset.path=DIR --out=OUT

Trains ``configs/<suite>_<method>.py`` (a suite without a method's file takes
its G-HMLC file with ``method`` replaced), or any ``--config`` file with each
method in turn, for every method and seed under
``OUT/runs/<method>_seed<k>``, skipping runs whose ``results.json`` exists, so
an interrupted suite resumes where it stopped. On the composite digit suites
(hdigits, hmnist) the ``--swap_methods`` also run with the two digits' roles
swapped (``dataset.level_order=class_first``), and the ordering table reports
each digit's accuracy under both orders. Writes ``OUT/results.json``,
``OUT/results.md`` and ``OUT/tsne.png`` (first seed, the paper's Figure 4);
a rerun keeps the figure when what it was drawn from is unchanged
(``OUT/tsne.json``: the suite, ``--tsne_points`` and the seed-0 runs' results).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Sequence

import numpy as np

from hmlc_jax.cpu import cpu_devices_for, split_cpu
from hmlc_jax import workdir as files
from hmlc_jax.methods import METHOD_NAMES
from hmlc_jax.sweeps import (add_source_arguments, apply_overrides, cell, check_source, fail,
                             load_config, mean_std, parse_variant, swappable,
                             train_unless_done)

DEFAULT_METHODS = ("supcon", "hmce", "ghmlc", "ahmlc")
PER_LEVEL = ("linear_probe_accuracy", "linear_probe_balanced_accuracy", "knn_accuracy",
             "silhouette")
MIN_LEVEL_DIMS = 4     # a healthy level has at least this many dimensions (or mask mass)
SCALARS = ("embedding_variance", "hierarchical_consistency", "feature_groups")
# The finest level's linear probe: how far up the tree its mistakes reach.
MISTAKES = (("mistake_severity", "severity"), ("hdist_at_1", "hdist@1"), ("hdist_at_5", "hdist@5"))
SWAPPED = "class_first"
TSNE_INPUTS = "tsne.json"        # what OUT/tsne.png was drawn from (`tsne_inputs`)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m hmlc_jax.compare", description=__doc__.split(
      "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  add_source_arguments(p)
  p.add_argument("--seeds", type=int, default=3, help="runs per method, seeds 0..N-1")
  p.add_argument("--out", required=True, help="output directory (runs/, results.*, tsne.png)")
  p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                 help="comma-separated methods (" + METHOD_NAMES + ")")
  p.add_argument("--swap_methods", default="ghmlc",
                 help="methods also run with the digit levels swapped (digit suites); "
                      "empty for none")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="override a config field in every run, e.g. "
                      "--set=dataset.data_dir=/data/modelnet40 (repeatable)")
  p.add_argument("--tsne_points", type=int, default=1500, help="test points per t-SNE panel")
  return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
  from hmlc_jax.methods import METHODS
  args.methods = [m for m in args.methods.split(",") if m]
  args.swap_methods = [m for m in args.swap_methods.split(",") if m] \
      if swappable(load_config(args, args.methods[0] if args.methods else "ghmlc")) else []
  for m in args.methods + args.swap_methods:
    if m not in METHODS:
      fail(f"unknown method {m!r} in --methods/--swap_methods; choose from {list(METHODS)}")
  if not args.methods:
    fail("--methods is empty")
  if args.seeds < 1:
    fail(f"--seeds must be at least 1, got {args.seeds}")
  try:
    run_config(args, dict(method=args.methods[0], seed=0, order=""))
  except ValueError as e:
    fail(f"--set: {e}")


def run_name(method: str, seed: int, order: str = "") -> str:
  return f"{method}_seed{seed}" + (f"_{order}" if order else "")


def planned_runs(args) -> List[Dict]:
  runs = [dict(method=m, seed=s, order="") for m in args.methods for s in range(args.seeds)]
  runs += [dict(method=m, seed=s, order=SWAPPED) for m in args.swap_methods
           for s in range(args.seeds)]
  return runs


def run_config(args, run: Dict):
  """The config of one planned run: the suite's file, ``--set`` overrides, seed, order."""
  config = load_config(args, run["method"])
  for override in args.set:
    apply_overrides(config, parse_variant(override))
  config.seed = run["seed"]
  if run["order"]:
    config.dataset.level_order = run["order"]
  return config


def train_missing(args, runs: List[Dict]) -> Dict[str, Dict]:
  """Trains every run without a results.json; returns name -> results."""
  results = {}
  for i, run in enumerate(runs):
    name = run_name(run["method"], run["seed"], run["order"])

    results[name] = train_unless_done(lambda run=run: run_config(args, run),
                                      os.path.join(args.out, "runs", name),
                                      f"[{i + 1}/{len(runs)}] {name}")
  return results


def add_feature_groups(args, results: Dict[str, Dict]) -> None:
  """Each run's ``feature_groups``: the DP-mixture count of feature groups in its
  test embeddings (`workdir.levels_workdir`, kept in the run's levels.json)."""
  for name, result in results.items():
    workdir = os.path.join(args.out, "runs", name)
    if os.path.exists(files.path(workdir, files.LEVELS)):
      report = files.read_json(workdir, files.LEVELS)
    else:
      report = files.levels_workdir(workdir)
    result["feature_groups"] = report["groups"]


def aggregate(args, results: Dict[str, Dict]) -> Dict:
  """Per method (default order): mean/std over seeds of every reported number."""
  table = {}
  for m in args.methods:
    runs = [results[run_name(m, s)] for s in range(args.seeds)]
    table[m] = {key: dict(mean_std([r.get(key) for r in runs]), values=[r.get(key) for r in runs])
                for key in PER_LEVEL + SCALARS}
    for key, _ in MISTAKES:       # None for runs scored before these metrics existed
      values = [r.get(key, {}).get("linear_probe") for r in runs]
      table[m][key] = dict(mean_std(values), values=values)
  return table


def chance_loss(config: Dict) -> float:
  """A level loss's value for embeddings that carry nothing of it:
  ``(T / T_base) ln(2B - 1)`` (every other view in the global batch alike)."""
  return (config["temperature"] / config["base_temperature"]
          * float(np.log(2 * config["batch_size"] - 1)))


def level_health(result: Dict) -> Dict:
  """Each level's last logged loss against chance and its dimensions (G-HMLC's
  group size, A-HMLC's mask mass); ``healthy`` when every level's loss is below
  chance and it has at least `MIN_LEVEL_DIMS` dimensions. Methods without
  per-level losses report none."""
  logged, chance = result.get("last_logged", {}), chance_loss(result["config"])
  levels = []
  for h in range(len(result["linear_probe_accuracy"])):
    loss, dims = logged.get(f"level_loss/{h}"), logged.get(f"level_dims/{h}")
    if loss is not None:
      levels.append(dict(loss=loss, dims=dims, ok=loss < chance and (
          dims is None or dims >= MIN_LEVEL_DIMS)))
  return dict(chance=chance, levels=levels, healthy=all(level["ok"] for level in levels))


def digit_accuracies(result: Dict) -> Dict[str, float]:
  """Linear-probe accuracy per digit and of the leaf path, whatever the level order."""
  out = {result["level_names"][0]: result["linear_probe_accuracy"][0],
         "path": result["linear_probe_accuracy"][1]}
  out.update(result.get("extra_probe_accuracy", {}))
  return out


def ordering(args, results: Dict[str, Dict]) -> Dict:
  """Per swap method: each digit's (and the path's) accuracy under both orders."""
  table = {}
  for m in args.swap_methods:
    orders = {}
    for order in ("", SWAPPED):
      per_seed = [digit_accuracies(results[run_name(m, s, order)]) for s in range(args.seeds)]
      orders[order or "category_first"] = {k: float(np.mean([d[k] for d in per_seed]))
                                           for k in ("category", "class", "path")}
    table[m] = dict(orders, change={k: orders[SWAPPED][k] - orders["category_first"][k]
                                    for k in ("category", "class", "path")})
  return table


def tsne_inputs(args) -> Dict:
  """What the suite's t-SNE figure is drawn from: the suite, the point count and
  each method's seed-0 run (its results.json's modification time, which a
  retrained run changes)."""
  runs = {}
  for m in args.methods:
    results = files.path(os.path.join(args.out, "runs", run_name(m, 0)), files.RESULTS)
    runs[m] = os.stat(results).st_mtime_ns
  return dict(suite=args.suite, tsne_points=args.tsne_points, runs=runs)


def tsne(args, results: Dict[str, Dict]) -> str:
  """Draws ``OUT/tsne.png`` unless it was drawn from the same inputs (`tsne_inputs`)."""
  from hmlc_jax import analysis
  figure, record = files.path(args.out, files.TSNE), files.path(args.out, TSNE_INPUTS)
  inputs = tsne_inputs(args)
  if os.path.exists(figure) and os.path.exists(record) and \
      files.read_json(args.out, TSNE_INPUTS) == inputs:
    print(f"{figure} was drawn from these runs, keeping it")
    return figure
  panels, names = [], None
  for m in args.methods:
    found = files.sample_test_embeddings(os.path.join(args.out, "runs", run_name(m, 0)),
                                         args.tsne_points)
    panels.append((m, analysis.tsne_points(found["embeddings"]), found["labels"]))
    names = found["level_names"]
  analysis.tsne_figure(panels, names, figure,
                       title=f"{args.suite}: t-SNE of test embeddings (seed 0)")
  files.write_json(record, inputs)
  return figure


def health_lines(results: Dict[str, Dict]) -> List[str]:
  """The level-health table: every run's per-level loss (chance beside it) and dims."""
  rows = [(name, level_health(r)) for name, r in sorted(results.items())]
  rows = [(name, h) for name, h in rows if h["levels"]]
  if not rows:
    return []
  lines = ["", f"## Level health (last logged step; a level is healthy with its loss below "
           f"chance and at least {MIN_LEVEL_DIMS} dimensions)", "",
           "| run | chance | loss per level | dims per level | healthy |", "|---|---|---|---|---|"]
  for name, h in rows:
    dims = [level["dims"] for level in h["levels"]]
    lines.append(f"| {name} | {h['chance']:.3f} | "
                 + " / ".join(f"{level['loss']:.3f}" for level in h["levels"]) + " | "
                 + (" / ".join(f"{d:.1f}" for d in dims) if None not in dims else "n/a")
                 + f" | {'yes' if h['healthy'] else 'NO'} |")
  return lines


def markdown(args, level_names: Sequence[str], table: Dict, order_table: Dict,
             command: str, results: Dict[str, Dict]) -> str:
  lines = [f"# {args.suite}: {', '.join(args.methods)}, {args.seeds} seed(s)"
           f"{' (smoke)' if args.smoke else ''}", "", f"Made by `{command}` on "
           f"{time.strftime('%Y-%m-%d')}. Mean ± standard deviation over seeds; test split.",
           ""]
  header = ["method"]
  for key, short in (("linear_probe_accuracy", "probe"),
                     ("linear_probe_balanced_accuracy", "balanced probe"),
                     ("knn_accuracy", "kNN"), ("silhouette", "silhouette")):
    header += [f"{short} {name}" for name in level_names]
  header += ["variance", "consistency", "feature groups"] + [short for _, short in MISTAKES]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for m, stats in table.items():
    row = [m]
    for key in PER_LEVEL:
      row += [cell(stats[key], h, key != "silhouette") for h in range(len(level_names))]
    row += [cell(stats["embedding_variance"], 0, False),
            cell(stats["hierarchical_consistency"], 0, True),
            cell(stats["feature_groups"], 0, False, digits=1)]
    row += [cell(stats[key], 0, False, digits=2) for key, _ in MISTAKES]
    lines.append("| " + " | ".join(row) + " |")
  lines += ["", "Probe, balanced probe (the mean of per-class recalls) and kNN accuracy and "
            "consistency in %; silhouette (cosine) and "
            "variance of the normalised embeddings as numbers; feature groups: components "
            f"a Dirichlet-process mixture finds in the test embeddings (`main.py "
            f"--mode=levels`), beside the label tree's {len(level_names)} levels; "
            "severity: the mean height, over the finest-level probe's mistakes, of the "
            "lowest common ancestor of the predicted and the true class (1: siblings); "
            "hdist@k: that height averaged over the probe's k best classes (0 for the "
            "true one)."]
  lines += health_lines(results)
  if order_table:
    lines += ["", "## Level order (linear probe, % , mean over seeds)", "",
              "| method | order | category digit | class digit | path |", "|---|---|---|---|---|"]
    for m, t in order_table.items():
      for order in ("category_first", SWAPPED, "change"):
        v = t[order]
        lines.append(f"| {m} | {order} | " + " | ".join(
            f"{100 * v[k]:+.1f}" if order == "change" else f"{100 * v[k]:.1f}"
            for k in ("category", "class", "path")) + " |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
  args = parse_args(argv)
  check_source(args)
  probe = load_config(args, "ghmlc")
  split_cpu(cpu_devices_for(probe.batch_size))      # before jax is imported
  check_args(args)
  runs = planned_runs(args)
  from hmlc_jax.errors import UserInputError
  os.makedirs(args.out, exist_ok=True)
  try:
    results = train_missing(args, runs)
    add_feature_groups(args, results)
    figure = tsne(args, results)
  except UserInputError as e:
    fail(str(e))
  table, order_table = aggregate(args, results), ordering(args, results)
  level_names = results[run_name(args.methods[0], 0)]["level_names"]
  command = "python -m hmlc_jax.compare " + " ".join(argv)
  summary = dict(suite=args.suite, seeds=args.seeds, smoke=args.smoke, command=command,
                 level_names=level_names, methods=table, ordering=order_table,
                 level_health={name: level_health(r) for name, r in sorted(results.items())},
                 runs=sorted(results), date=time.strftime("%Y-%m-%d"))
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(summary, f, indent=2)
  text = markdown(args, level_names, table, order_table, command, results)
  with open(os.path.join(args.out, "results.md"), "w") as f:
    f.write(text)
  print(text)
  print(f"wrote {args.out}/results.md, results.json and {os.path.basename(figure)}")


if __name__ == "__main__":
  main(sys.argv[1:])
