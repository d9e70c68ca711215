"""Ablation runner: one method's settings varied one at a time, scored on validation.

    python -m hmlc_jax.ablation --suite=hdigits --out=runs/ablation --steps=150
    python -m hmlc_jax.ablation --suite=hdigits --out=/tmp/a --smoke \\
        --variants=default,gmm.mask_grad=soft,gmm.order=ascending+temperature=0.5
    python -m hmlc_jax.ablation --config=configs/folder_ghmlc.py --set=dataset.path=DIR \
        --out=OUT

The runs start from the suite's config file, or any ``--config`` file. A
variant is ``default`` (that config as it is), ``method=NAME`` (a
reference method), or ``FIELD=VALUE`` overrides of config fields joined by
``+``. Every run is scored on ``dataset.eval_split="validation"`` (held out of
the training data), never on the test split, so the table can choose
defaults. Runs live in ``OUT/runs/<variant>_seed<k>`` and are skipped when
finished (resume); ``OUT/ablation.md`` and ``OUT/ablation.json`` hold the table.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Dict, List, Sequence

from hmlc_jax.cpu import cpu_devices_for, split_cpu
from hmlc_jax.sweeps import (add_source_arguments, apply_overrides, cell, check_source, fail,
                             load_config, mean_std, parse_variant, train_unless_done)

# The settings the method paper's evidence depends on, one at a time.
DEFAULT_VARIANTS = (
    "default", "method=hmce", "gmm.mask_grad=straight_through", "gmm.mask_grad=soft",
    "gmm.order=ascending", "level_weights=exp", "gmm.num_iters=3", "gmm.fit_over=sample",
    "gmm.min_share=0.1", "gmm.min_share=0.0", "temperature=0.5")
REPORTED = ("linear_probe_accuracy", "knn_accuracy", "silhouette")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m hmlc_jax.ablation",
                              description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  add_source_arguments(p)
  p.add_argument("--method", default="ghmlc", help="the method whose settings vary")
  p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                 help="comma-separated variants (see above)")
  p.add_argument("--seeds", type=int, default=1, help="runs per variant, seeds 0..N-1")
  p.add_argument("--steps", type=int, default=0,
                 help="training steps per run; 0 keeps the config's budget")
  p.add_argument("--out", required=True, help="output directory (runs/, ablation.*)")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="override a config field in every run before the variant's own, "
                      "e.g. --set=dataset.train_size=20000 (repeatable)")
  return p.parse_args(argv)


def run_dir(variant: str, seed: int) -> str:
  return re.sub(r"[^A-Za-z0-9._-]", "_", variant) + f"_seed{seed}"


def config_for(args, variant: str, seed: int):
  overrides = parse_variant(variant)
  method = overrides.pop("method", args.method)
  config = load_config(args, method)
  for override in args.set:
    apply_overrides(config, parse_variant(override))
  apply_overrides(config, overrides)
  config.seed = seed
  config.dataset.eval_split = "validation"
  if args.steps > 0:
    config.num_train_steps = args.steps
  return config


def split_variants(text: str) -> List[str]:
  """Splits ``--variants`` at commas outside parentheses: tuples stay whole."""
  return [v for v in re.split(r",(?![^()]*\))", text) if v]


def check_args(args) -> None:
  from hmlc_jax.methods import METHODS
  args.variants = split_variants(args.variants)
  if not args.variants:
    fail("--variants is empty")
  if args.seeds < 1:
    fail(f"--seeds must be at least 1, got {args.seeds}")
  if args.method not in METHODS:
    fail(f"unknown --method {args.method!r}; choose from {list(METHODS)}")
  for variant in args.variants:          # every variant must build before any run starts
    try:
      method = config_for(args, variant, 0).method
    except ValueError as e:
      fail(str(e))
    if method not in METHODS:
      fail(f"variant {variant!r}: unknown method {method!r}; choose from "
                   f"{list(METHODS)}")


def table(args, results: Dict[str, List[Dict]]) -> Dict:
  """Per variant: mean/std over seeds of the reported numbers and the train loss."""
  return {v: {key: dict(mean_std([r[key] for r in runs]),
                        values=[r[key] for r in runs]) for key in REPORTED + ("train_loss",)}
          for v, runs in results.items()}


def markdown(args, level_names: Sequence[str], rows: Dict, command: str) -> str:
  lines = [f"# {args.suite} ablation of {args.method}, {args.seeds} seed(s)"
           f"{' (smoke)' if args.smoke else ''}", "",
           f"Made by `{command}` on {time.strftime('%Y-%m-%d')}. Validation split (held "
           "out of train); mean ± standard deviation over seeds (the mean alone for one seed). "
           "Probe and kNN in %.", ""]
  header = ["variant"] + [f"{short} {n}" for short in ("probe", "kNN", "silhouette")
                          for n in level_names] + ["train loss"]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for variant, stats in rows.items():
    cells = [f"`{variant}`"]
    for key in REPORTED:
      cells += [cell(stats[key], h, key != "silhouette")
                for h in range(len(level_names))]
    cells.append(cell(stats["train_loss"], 0, False))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
  args = parse_args(argv)
  check_source(args)
  probe = load_config(args, "ghmlc")
  split_cpu(cpu_devices_for(probe.batch_size))      # before jax is imported
  check_args(args)
  from hmlc_jax.errors import UserInputError
  os.makedirs(args.out, exist_ok=True)
  results = {}
  total = len(args.variants) * args.seeds
  try:
    for i, variant in enumerate(args.variants):
      results[variant] = [train_unless_done(
          lambda v=variant, s=seed: config_for(args, v, s),
          os.path.join(args.out, "runs", run_dir(variant, seed)),
          f"[{i * args.seeds + seed + 1}/{total}] {variant} seed {seed}")
          for seed in range(args.seeds)]
  except UserInputError as e:
    fail(str(e))
  rows = table(args, results)
  level_names = results[args.variants[0]][0]["level_names"]
  command = "python -m hmlc_jax.ablation " + " ".join(argv)
  with open(os.path.join(args.out, "ablation.json"), "w") as f:
    json.dump(dict(suite=args.suite, method=args.method, seeds=args.seeds, steps=args.steps,
                   smoke=args.smoke, command=command, level_names=level_names,
                   eval_split="validation", variants=rows, date=time.strftime("%Y-%m-%d")),
              f, indent=2)
  text = markdown(args, level_names, rows, command)
  with open(os.path.join(args.out, "ablation.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main(sys.argv[1:])
