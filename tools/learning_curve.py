"""Probe accuracy against training steps, from runs trained with ``eval.every_steps``.

    python tools/learning_curve.py --runs=supcon:WORKDIR_A,ghmlc:WORKDIR_B --out=DIR

Reads each workdir's ``evaluations.json`` (the evaluations during training)
and ``results.json`` (the last step's), and writes ``DIR/curve.md`` (a table
per level: linear-probe and kNN accuracy at every evaluated step),
``DIR/curve.json`` and ``DIR/curve.png`` (probe accuracy against steps, a panel
per level). With ``--choose`` it also names, per run, the first step whose
finest-level probe accuracy is within ``--tolerance`` points of the run's best:
where more training stops paying on that split.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hmlc_jax import workdir as files  # noqa: E402  pylint: disable=wrong-import-position


def read_curve(workdir: str) -> dict:
  """Steps and per-level probe / kNN accuracies of one run, in step order."""
  points = list(files.read_json(workdir, files.EVALUATIONS)["evaluations"])
  final = files.read_json(workdir, files.RESULTS)
  points.append(final)
  points.sort(key=lambda p: p["step"] if "step" in p else p["steps"])
  return {"steps": [p.get("step", p.get("steps")) for p in points],
          "linear_probe_accuracy": [p["linear_probe_accuracy"] for p in points],
          "knn_accuracy": [p["knn_accuracy"] for p in points],
          "train_loss": [p["train_loss"] for p in points],
          "level_names": final["level_names"], "eval_split": final["eval_split"]}


def chosen_step(curve: dict, tolerance: float) -> int:
  """The first step whose finest-level probe is within ``tolerance`` points of the best."""
  finest = [a[-1] for a in curve["linear_probe_accuracy"]]
  best = max(finest)
  return next(s for s, a in zip(curve["steps"], finest) if 100 * (best - a) <= tolerance)


def markdown(curves: dict, command: str, choices: dict) -> str:
  names = next(iter(curves.values()))["level_names"]
  split = next(iter(curves.values()))["eval_split"]
  lines = [f"# Learning curves ({split} split)", "",
           f"Made by `{command}` on {time.strftime('%Y-%m-%d')}. Linear probe / kNN "
           f"accuracy in % at each evaluated step.", ""]
  for h, name in enumerate(names):
    lines += [f"## {name}", "", "| run | " + " | ".join(
        str(s) for s in next(iter(curves.values()))["steps"]) + " |",
              "|---|" + "---|" * len(next(iter(curves.values()))["steps"])]
    for run, curve in curves.items():
      lines.append(f"| {run} | " + " | ".join(
          f"{100 * p[h]:.2f} / {100 * k[h]:.2f}" for p, k in
          zip(curve["linear_probe_accuracy"], curve["knn_accuracy"])) + " |")
    lines.append("")
  if choices:
    lines += ["## Where the finest level stops improving", ""]
    lines += [f"- {run}: step {step}" for run, step in choices.items()]
  return "\n".join(lines) + "\n"


def plot(curves: dict, path: str) -> None:
  import matplotlib   # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt   # pylint: disable=import-outside-toplevel
  names = next(iter(curves.values()))["level_names"]
  fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
  for h, (ax, name) in enumerate(zip(axes[0], names)):
    for run, curve in curves.items():
      ax.plot(curve["steps"], [100 * a[h] for a in curve["linear_probe_accuracy"]], "o-",
              label=run)
    ax.set_title(f"{name} ({next(iter(curves.values()))['eval_split']})")
    ax.set_xlabel("training steps")
    ax.set_ylabel("linear probe accuracy (%)")
    ax.grid(alpha=0.3)
  axes[0][0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--runs", required=True, help="comma-separated NAME:WORKDIR")
  p.add_argument("--out", required=True)
  p.add_argument("--choose", action="store_true")
  p.add_argument("--tolerance", type=float, default=0.3,
                 help="points below the best that count as converged (--choose)")
  args = p.parse_args(argv)
  curves = {}
  for item in args.runs.split(","):
    name, _, workdir = item.partition(":")
    curves[name] = read_curve(workdir)
  choices = {run: chosen_step(c, args.tolerance) for run, c in curves.items()} \
      if args.choose else {}
  os.makedirs(args.out, exist_ok=True)
  command = "python tools/learning_curve.py " + " ".join(argv if argv is not None
                                                          else sys.argv[1:])
  with open(os.path.join(args.out, "curve.json"), "w") as f:
    json.dump(dict(command=command, date=time.strftime("%Y-%m-%d"), curves=curves,
                   chosen_steps=choices, tolerance_points=args.tolerance), f, indent=1)
  text = markdown(curves, command, choices)
  with open(os.path.join(args.out, "curve.md"), "w") as f:
    f.write(text)
  plot(curves, os.path.join(args.out, "curve.png"))
  print(text)


if __name__ == "__main__":
  main()
