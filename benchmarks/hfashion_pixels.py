"""Raw-pixel baseline for hfashion: multinomial logistic regression per level.

    python benchmarks/hfashion_pixels.py --json=benchmarks/results/hfashion_pixels.json

The reference a learned representation must beat: a linear classifier on
the 784 standardised pixels of the training split, scored on the test split,
one model per level of the hierarchy. ``--classifier=probe`` (default) is the
very linear probe every trained encoder gets (``hmlc_jax.evaluate.linear_probe``
with the hfashion configs' ``eval`` settings: softmax regression by Adam,
weight decay and epochs chosen on a held-out part of train); ``sklearn`` is
scikit-learn's `LogisticRegression` with ``C`` chosen on a validation split
(``--val_fraction``), then refitted on all of train (slow: tens of minutes on
2 cores).
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
  p.add_argument("--classifier", default="probe", choices=("probe", "sklearn"))
  return p.parse_args(argv)


def fit_score(c, train_x, train_y, test_x, test_y, max_iter) -> float:
  from sklearn.linear_model import LogisticRegression
  model = LogisticRegression(C=c, max_iter=max_iter)
  model.fit(train_x, train_y)
  return float(model.score(test_x, test_y))


def sklearn_rows(data, train_x, test_x, c_values, val_fraction, max_iter) -> list:
  """scikit-learn's LogisticRegression per level, ``C`` chosen on a validation split."""
  order = np.random.default_rng(0).permutation(len(train_x))
  n_val = int(round(val_fraction * len(order)))
  val, fit = order[:n_val], order[n_val:]
  rows = []
  for h, name in enumerate(data.level_names):
    y = data.train_y[:, h]
    if len(c_values) > 1:
      val_acc = {c: fit_score(c, train_x[fit], y[fit], train_x[val], y[val], max_iter)
                 for c in c_values}
    else:                                # one value: nothing to choose
      val_acc = {c_values[0]: None}
    best = max(val_acc, key=lambda c: val_acc[c] or 0.0)
    test = fit_score(best, train_x, y, test_x, data.test_y[:, h], max_iter)
    rows.append(dict(level=name, classes=data.num_classes[h], C=best,
                     val_accuracy=val_acc[best], test_accuracy=test))
    chosen = f"validation {100 * val_acc[best]:.2f}%, " if val_acc[best] is not None else ""
    print(f"level {h} ({name}, {data.num_classes[h]} classes): C={best} {chosen}"
          f"test {100 * test:.2f}%", flush=True)
  return rows


def probe_rows(data, train_x, test_x) -> list:
  """``hmlc_jax.evaluate.linear_probe`` per level, with the hfashion eval settings."""
  from configs import common
  from hmlc_jax import evaluate
  config = common.hfashion("supcon", "").eval
  rows = []
  for h, name in enumerate(data.level_names):
    r = evaluate.linear_probe(train_x, data.train_y[:, h], test_x, data.test_y[:, h],
                              data.num_classes[h], config, seed=0)
    rows.append(dict(level=name, classes=data.num_classes[h], weight_decay=r["weight_decay"],
                     epochs=r["epochs"], val_accuracy=r["val_accuracy"],
                     test_accuracy=r["accuracy"]))
    print(f"level {h} ({name}, {data.num_classes[h]} classes): weight decay "
          f"{r['weight_decay']}, {r['epochs']} epochs, validation {100 * r['val_accuracy']:.2f}%, "
          f"test {100 * r['accuracy']:.2f}%", flush=True)
  return rows


def main(argv=None) -> None:
  from configs import common
  from hmlc_jax.data import hfashion
  args = parse_args(argv)
  config = common.base_config("supcon").dataset
  config.update(name="hfashion", data_dir=args.data_dir, train_size=args.train_size)
  data = hfashion.load(config)
  flat = lambda x: x.reshape(len(x), -1).astype(np.float64) / 255.0
  train_x, test_x = flat(data.train_x), flat(data.test_x)
  mean, std = train_x.mean(0), train_x.std(0) + 1e-8
  train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
  start = time.perf_counter()
  if args.classifier == "probe":
    rows = probe_rows(data, train_x.astype(np.float32), test_x.astype(np.float32))
  else:
    rows = sklearn_rows(data, train_x, test_x, [float(c) for c in args.c_values.split(",")],
                        args.val_fraction, args.max_iter)
  print("| level | classes | chosen on validation | test accuracy |")
  print("|---|---|---|---|")
  for r in rows:
    chosen = r.get("C", r.get("weight_decay"))
    print(f"| {r['level']} | {r['classes']} | {chosen} | {100 * r['test_accuracy']:.2f}% |")
  with open(args.json, "w") as f:
    json.dump(dict(levels=rows, classifier=args.classifier, train_size=len(train_x),
                   date=time.strftime("%Y-%m-%d"), seconds=time.perf_counter() - start),
              f, indent=2)
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
