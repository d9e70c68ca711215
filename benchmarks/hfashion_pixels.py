"""Raw-pixel baseline for hfashion: multinomial logistic regression per level.

    python benchmarks/hfashion_pixels.py --json=benchmarks/results/hfashion_pixels.json

The reference a learned representation must beat: scikit-learn's
`LogisticRegression` on the 784 standardised pixels of the training split,
scored on the test split, one model per level of the hierarchy. The
regularisation strength ``C`` is chosen on a validation split held out of
train (``--val_fraction``), then the model is refitted on all of train.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--data_dir", default="", help="folder of the IDX files (default: as hfashion)")
  p.add_argument("--train_size", type=int, default=0, help="0: all 60,000")
  p.add_argument("--c_values", default="0.01,0.1,1.0")
  p.add_argument("--val_fraction", type=float, default=0.1)
  p.add_argument("--max_iter", type=int, default=300)
  p.add_argument("--json", default="hfashion_pixels.json")
  return p.parse_args(argv)


def fit_score(c, train_x, train_y, test_x, test_y, max_iter) -> float:
  from sklearn.linear_model import LogisticRegression
  model = LogisticRegression(C=c, max_iter=max_iter)
  model.fit(train_x, train_y)
  return float(model.score(test_x, test_y))


def main(argv=None) -> None:
  import ml_collections
  from hmlc_jax.data import hfashion
  args = parse_args(argv)
  data = hfashion.load(ml_collections.ConfigDict(dict(
      name="hfashion", data_dir=args.data_dir, download=True, seed=0,
      train_size=args.train_size, test_size=0)))
  flat = lambda x: x.reshape(len(x), -1).astype(np.float64) / 255.0
  train_x, test_x = flat(data.train_x), flat(data.test_x)
  mean, std = train_x.mean(0), train_x.std(0) + 1e-8
  train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
  order = np.random.default_rng(0).permutation(len(train_x))
  n_val = int(round(args.val_fraction * len(order)))
  val, fit = order[:n_val], order[n_val:]
  c_values = [float(c) for c in args.c_values.split(",")]
  rows = []
  start = time.perf_counter()
  for h, name in enumerate(data.level_names):
    y = data.train_y[:, h]
    if len(c_values) > 1:
      val_acc = {c: fit_score(c, train_x[fit], y[fit], train_x[val], y[val], args.max_iter)
                 for c in c_values}
    else:                                # one value: nothing to choose
      val_acc = {c_values[0]: None}
    best = max(val_acc, key=lambda c: val_acc[c] or 0.0)
    test = fit_score(best, train_x, y, test_x, data.test_y[:, h], args.max_iter)
    rows.append(dict(level=name, classes=data.num_classes[h], C=best,
                     val_accuracy=val_acc[best], test_accuracy=test))
    chosen = f"validation {100 * val_acc[best]:.2f}%, " if val_acc[best] is not None else ""
    print(f"level {h} ({name}, {data.num_classes[h]} classes): C={best} {chosen}"
          f"test {100 * test:.2f}%", flush=True)
  print("| level | classes | C (validation) | test accuracy |")
  print("|---|---|---|---|")
  for r in rows:
    print(f"| {r['level']} | {r['classes']} | {r['C']} | {100 * r['test_accuracy']:.2f}% |")
  with open(args.json, "w") as f:
    json.dump(dict(levels=rows, train_size=len(train_x), date=time.strftime("%Y-%m-%d"),
                   seconds=time.perf_counter() - start), f, indent=2)
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
