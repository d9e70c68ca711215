"""Comparison runner: methods x seeds on one data set, aggregated, with t-SNE.

    python -m hmlc_jax.compare --suite=hdigits --seeds=3 --out=docs/hdigits
    python -m hmlc_jax.compare --suite=hdigits --seeds=2 --out=/tmp/s --smoke

Trains ``configs/<suite>_<method>.py`` (a suite without a method's file takes
its G-HMLC file with ``method`` replaced) for every method and seed under
``OUT/runs/<method>_seed<k>``, skipping runs whose ``results.json`` exists, so
an interrupted suite resumes where it stopped. On the composite digit suites
(hdigits, hmnist) the ``--swap_methods`` also run with the two digits' roles
swapped (``dataset.level_order=class_first``), and the ordering table reports
each digit's accuracy under both orders. Writes ``OUT/results.json``,
``OUT/results.md`` and ``OUT/tsne.png`` (first seed, the paper's Figure 4).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from typing import Dict, List, Sequence

import numpy as np

from hmlc_jax.cpu import cpu_devices_for, split_cpu
from hmlc_jax.methods import METHOD_NAMES

SUITES = {"hdigits": True, "hfashion": False, "hmnist": True, "cifar100": False, "modelnet40": False,
          "shapes3d": False}                     # suite -> has swappable digit levels
DEFAULT_METHODS = ("supcon", "hmce", "ghmlc", "ahmlc")
PER_LEVEL = ("linear_probe_accuracy", "knn_accuracy", "silhouette")
SCALARS = ("embedding_variance", "hierarchical_consistency")
SWAPPED = "class_first"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m hmlc_jax.compare", description=__doc__.split(
      "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--suite", required=True, choices=sorted(SUITES))
  p.add_argument("--seeds", type=int, default=3, help="runs per method, seeds 0..N-1")
  p.add_argument("--out", required=True, help="output directory (runs/, results.*, tsne.png)")
  p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                 help="comma-separated methods (" + METHOD_NAMES + ")")
  p.add_argument("--swap_methods", default="ghmlc",
                 help="methods also run with the digit levels swapped (digit suites); "
                      "empty for none")
  p.add_argument("--smoke", action="store_true", help="the configs' :smoke variants")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="override a config field in every run, e.g. "
                      "--set=dataset.data_dir=/data/modelnet40 (repeatable)")
  p.add_argument("--tsne_points", type=int, default=1500, help="test points per t-SNE panel")
  p.add_argument("--configs_dir", default=os.path.join(REPO, "configs"))
  return p.parse_args(argv)


def fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def check_args(args: argparse.Namespace) -> None:
  from hmlc_jax.methods import METHODS
  args.methods = [m for m in args.methods.split(",") if m]
  args.swap_methods = [m for m in args.swap_methods.split(",") if m] if SUITES[args.suite] \
      else []
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


def load_config(configs_dir: str, suite: str, method: str, smoke: bool):
  """``configs/<suite>_<method>.py`` (or the suite's G-HMLC file, re-methoded)."""
  path = os.path.join(configs_dir, f"{suite}_{method}.py")
  if not os.path.exists(path):
    path = os.path.join(configs_dir, f"{suite}_ghmlc.py")
  config = config_from_file(path + (":smoke" if smoke else ""))
  config.method = method
  return config


def config_from_file(spec: str):
  """The config of ``FILE.py[:variant]`` (``get_config(variant)``), as main.py reads it.

  The directory above the file is put on ``sys.path`` so that configs can
  ``from configs import common``.
  """
  path, _, variant = spec.partition(":")
  path = os.path.abspath(path)
  parent = os.path.dirname(os.path.dirname(path))
  if parent not in sys.path:
    sys.path.insert(0, parent)
  name = "config_" + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant)


def run_name(method: str, seed: int, order: str = "") -> str:
  return f"{method}_seed{seed}" + (f"_{order}" if order else "")


def planned_runs(args) -> List[Dict]:
  runs = [dict(method=m, seed=s, order="") for m in args.methods for s in range(args.seeds)]
  runs += [dict(method=m, seed=s, order=SWAPPED) for m in args.swap_methods
           for s in range(args.seeds)]
  return runs


def train_unless_done(config_fn, workdir: str, label: str) -> Dict:
  """The results of ``workdir``: read if its results.json exists, else trained
  now with ``config_fn()`` (called only then)."""
  path = os.path.join(workdir, "results.json")
  if os.path.exists(path):
    print(f"{label}: finished earlier, skipping", flush=True)
  else:
    print(f"{label}: training", flush=True)
    from hmlc_jax import train
    if train.train_and_evaluate(config_fn(), workdir).get("stopped_by"):
      print(f"{label}: stopped by a signal with a checkpoint; rerun the same command to "
            "resume", flush=True)
      sys.exit(0)
  with open(path) as f:
    return json.load(f)


def run_config(args, run: Dict):
  """The config of one planned run: the suite's file, ``--set`` overrides, seed, order."""
  from hmlc_jax import ablation
  config = load_config(args.configs_dir, args.suite, run["method"], args.smoke)
  for override in args.set:
    ablation.apply_overrides(config, ablation.parse_variant(override))
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


def mean_std(values: List) -> Dict:
  """Mean and sample standard deviation (0 for one value) over runs, per entry."""
  a = np.array([[np.nan if v is None else v for v in np.atleast_1d(x)] for x in values],
               np.float64)
  std = a.std(axis=0, ddof=1) if len(a) > 1 else np.zeros(a.shape[1])
  finite_or_none = lambda v: [float(x) if np.isfinite(x) else None for x in v]
  return {"mean": finite_or_none(a.mean(axis=0)), "std": finite_or_none(std)}


def aggregate(args, results: Dict[str, Dict]) -> Dict:
  """Per method (default order): mean/std over seeds of every reported number."""
  table = {}
  for m in args.methods:
    runs = [results[run_name(m, s)] for s in range(args.seeds)]
    table[m] = {key: dict(mean_std([r[key] for r in runs]), values=[r[key] for r in runs])
                for key in PER_LEVEL + SCALARS}
  return table


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


def tsne(args, results: Dict[str, Dict]) -> str:
  from hmlc_jax import analysis
  panels, names = [], None
  for m in args.methods:
    found = analysis.sample_test_embeddings(os.path.join(args.out, "runs", run_name(m, 0)),
                                            args.tsne_points)
    panels.append((m, analysis.tsne_points(found["embeddings"]), found["labels"]))
    names = found["level_names"]
  return analysis.tsne_figure(panels, names, os.path.join(args.out, "tsne.png"),
                              title=f"{args.suite}: t-SNE of test embeddings (seed 0)")


def cell(stats: Dict, i: int, percent: bool) -> str:
  """``mean ± std`` of entry ``i`` (just the mean for one run), in % if ``percent``."""
  mean, std = stats["mean"][i], stats["std"][i]
  if mean is None:
    return "n/a"
  scale, digits = (100.0, 1) if percent else (1.0, 3)
  text = f"{scale * mean:.{digits}f}"
  return text if len(stats.get("values", [])) == 1 else f"{text} ± {scale * std:.{digits}f}"


def markdown(args, level_names: Sequence[str], table: Dict, order_table: Dict,
             command: str) -> str:
  lines = [f"# {args.suite}: {', '.join(args.methods)}, {args.seeds} seed(s)"
           f"{' (smoke)' if args.smoke else ''}", "", f"Made by `{command}` on "
           f"{time.strftime('%Y-%m-%d')}. Mean ± standard deviation over seeds; test split.",
           ""]
  header = ["method"]
  for key, short in (("linear_probe_accuracy", "probe"), ("knn_accuracy", "kNN"),
                     ("silhouette", "silhouette")):
    header += [f"{short} {name}" for name in level_names]
  header += ["variance", "consistency"]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for m, stats in table.items():
    row = [m]
    for key in PER_LEVEL:
      row += [cell(stats[key], h, key != "silhouette") for h in range(len(level_names))]
    row += [cell(stats["embedding_variance"], 0, False),
            cell(stats["hierarchical_consistency"], 0, True)]
    lines.append("| " + " | ".join(row) + " |")
  lines += ["", "Probe and kNN accuracy and consistency in %; silhouette (cosine) and "
            "variance of the normalised embeddings as numbers."]
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
  probe = load_config(args.configs_dir, args.suite, "ghmlc", args.smoke)
  split_cpu(cpu_devices_for(probe.batch_size))      # before jax is imported
  check_args(args)
  runs = planned_runs(args)
  from hmlc_jax.errors import UserInputError
  os.makedirs(args.out, exist_ok=True)
  try:
    results = train_missing(args, runs)
    figure = tsne(args, results)
  except UserInputError as e:
    fail(str(e))
  table, order_table = aggregate(args, results), ordering(args, results)
  level_names = results[run_name(args.methods[0], 0)]["level_names"]
  command = "python -m hmlc_jax.compare " + " ".join(argv)
  summary = dict(suite=args.suite, seeds=args.seeds, smoke=args.smoke, command=command,
                 level_names=level_names, methods=table, ordering=order_table,
                 runs=sorted(results), date=time.strftime("%Y-%m-%d"))
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(summary, f, indent=2)
  text = markdown(args, level_names, table, order_table, command)
  with open(os.path.join(args.out, "results.md"), "w") as f:
    f.write(text)
  print(text)
  print(f"wrote {args.out}/results.md, results.json and {os.path.basename(figure)}")


if __name__ == "__main__":
  main(sys.argv[1:])
