"""How well can anything read hdigits' category digit? An accuracy ceiling.

    python benchmarks/hdigits_ceiling.py [--train_size N] [--json PATH]

The category digit is pasted at native size (8x8) and merged by maximum with
the upscaled class digit, so wherever the big digit's stroke is brighter the
small digit's ink is gone for good (the earlier build, with the class digit
filling the canvas, lost 38% of it; the current one places the small digit
around the class digit's square). This script rebuilds exactly the data set
of ``configs/hdigits_*.py`` (same seed and sizes) and gives classifiers an
*oracle*: the true position of the pasted 8x8 patch. Their test accuracy on
that patch bounds what any model that must also find the patch can reach.

Rows: RBF SVM and logistic regression (scikit-learn) on the 64 pixels of the
occluded patch; the same on the clean, unoccluded small digit (what is lost to
occlusion); the class digit from the whole composite pooled to 8x8; and the
leaf path (both right) from the SVMs' predictions. Also the mean fraction of
the patch the big digit covers (value > 0.5). Prints a table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import os
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import common  # noqa: E402
from hmlc_jax.data import composite, hdigits  # noqa: E402


def features(images: np.ndarray, layout: dict) -> dict:
  """Per composite: occluded patch, clean small digit, 8x8-pooled composite: ``[n, 64]``."""
  canvas = composite.class_canvas(images, layout, hdigits.CANVAS)
  index = composite.patch_index(layout["offsets"], hdigits.DIGIT)
  clean = images[layout["small"]]
  big_covers = (canvas[index] > 0.5).mean(axis=(1, 2))
  occluded = np.maximum(canvas[index], clean)
  canvas[index] = occluded
  pooled = canvas.reshape(-1, 8, 4, 8, 4).mean(axis=(2, 4))   # both digits, 4x4 blocks
  n = len(clean)
  return dict(occluded=occluded.reshape(n, -1), clean=clean.reshape(n, -1),
              pooled=pooled.reshape(n, -1), big_covers=big_covers)


def fit_predict(kind: str, x_train, y_train, x_test) -> np.ndarray:
  model = SVC(C=10.0) if kind == "svm" else LogisticRegression(max_iter=3000)
  return model.fit(x_train, y_train).predict(x_test)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--train_size", type=int, default=20000)
  parser.add_argument("--test_size", type=int, default=5000)
  parser.add_argument("--json", default="benchmarks/results/hdigits_ceiling.json")
  args = parser.parse_args()
  images, targets = hdigits.source_images()
  config = common.base_config("supcon").dataset
  config.update(name="hdigits", train_size=args.train_size, test_size=args.test_size)
  train, test = hdigits.layouts(config, targets)
  f_train, f_test = features(images, train), features(images, test)
  category = (train["category"], test["category"])
  klass = (train["klass"], test["klass"])
  rows, predictions = [], {}
  for target, labels, inputs in (("category", category, "occluded"),
                                 ("category", category, "clean"),
                                 ("class", klass, "pooled")):
    for kind in ("svm", "logistic"):
      start = time.time()
      pred = fit_predict(kind, f_train[inputs], labels[0], f_test[inputs])
      predictions[(target, inputs, kind)] = pred
      rows.append(dict(target=target, inputs=inputs, classifier=kind,
                       test_accuracy=float(np.mean(pred == labels[1])),
                       fit_seconds=round(time.time() - start, 1)))
  both = ((predictions[("category", "occluded", "svm")] == category[1])
          & (predictions[("class", "pooled", "svm")] == klass[1]))
  rows.append(dict(target="path (both digits)", inputs="occluded + pooled",
                   classifier="svm", test_accuracy=float(both.mean()), fit_seconds=0.0))
  print(f"{'target':<20} {'inputs (oracle position)':<26} {'classifier':<10} {'test acc':>8}")
  for r in rows:
    print(f"{r['target']:<20} {r['inputs']:<26} {r['classifier']:<10} "
          f"{100 * r['test_accuracy']:>7.1f}%")
  covered = float(f_test["big_covers"].mean())
  print(f"mean fraction of the 8x8 patch under the big digit's stroke (>0.5): {covered:.3f}")
  with open(args.json, "w") as f:
    json.dump(dict(rows=rows, patch_fraction_covered=covered, train_size=args.train_size,
                   test_size=args.test_size, date=time.strftime("%Y-%m-%d"),
                   machine=platform.platform()), f, indent=2)
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
