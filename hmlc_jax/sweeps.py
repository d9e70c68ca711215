"""What the comparison and ablation runners share: config files and overrides,
training a run unless it finished, mean ± std over seeds, and one-line failures.

`hmlc_jax.compare` (methods x seeds) and `hmlc_jax.ablation` (settings of one
method, on the validation split) both import this; neither imports the other.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
from typing import Dict, List

import ml_collections
import numpy as np

from hmlc_jax import workdir as files

SUITES = {"hdigits": True, "hfashion": False, "hmnist": True, "cifar100": False, "modelnet40": False,
          "shapes3d": False}                     # suite -> has swappable digit levels
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def add_source_arguments(parser) -> None:
  """``--suite`` or ``--config`` (which configs the runs start from), ``--smoke``
  and ``--configs_dir``."""
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--suite", choices=sorted(SUITES),
                      help="a data set of this repository: configs/<suite>_<method>.py")
  source.add_argument("--config", default="",
                      help="any config file, FILE.py[:variant] (e.g. your own data set's, "
                           "configs/folder_ghmlc.py with --set=dataset.path=DIR); every run "
                           "takes it with its own method")
  parser.add_argument("--smoke", action="store_true", help="the configs' :smoke variants")
  parser.add_argument("--configs_dir", default=os.path.join(REPO, "configs"))


def check_source(args) -> None:
  """After parsing: a ``--config`` file must exist; ``args.suite`` becomes its name
  (for titles and tables)."""
  if args.config:
    path = args.config.partition(":")[0]
    if not os.path.isfile(path):
      fail(f"--config {path}: no such file")
    args.suite = os.path.splitext(os.path.basename(path))[0]


def swappable(config) -> bool:
  """Whether the data set has digit levels whose order can be swapped."""
  return SUITES.get(config.dataset.name, False)


def load_config(args, method: str):
  """The config of a run of ``method``: ``--config`` (its ``:smoke`` variant with
  ``--smoke``) or ``configs/<suite>_<method>.py`` (the suite's G-HMLC file when the
  method has none), with ``method`` set."""
  if args.config:
    path, _, variant = args.config.partition(":")
    config = config_from_file(f"{path}:{'smoke' if args.smoke else variant}")
  else:
    path = os.path.join(args.configs_dir, f"{args.suite}_{method}.py")
    if not os.path.exists(path):
      path = os.path.join(args.configs_dir, f"{args.suite}_ghmlc.py")
    config = config_from_file(path + (":smoke" if args.smoke else ""))
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


def train_unless_done(config_fn, workdir: str, label: str) -> Dict:
  """The results of ``workdir``: read if its results.json exists, else trained
  now with ``config_fn()`` (called only then)."""
  path = files.path(workdir, files.RESULTS)
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


def mean_std(values: List) -> Dict:
  """Mean and sample standard deviation (0 for one value) over runs, per entry."""
  a = np.array([[np.nan if v is None else v for v in np.atleast_1d(x)] for x in values],
               np.float64)
  std = a.std(axis=0, ddof=1) if len(a) > 1 else np.zeros(a.shape[1])
  finite_or_none = lambda v: [float(x) if np.isfinite(x) else None for x in v]
  return {"mean": finite_or_none(a.mean(axis=0)), "std": finite_or_none(std)}


def cell(stats: Dict, i: int, percent: bool, digits: int = 0) -> str:
  """``mean ± std`` of entry ``i`` (just the mean for one run), in % if ``percent``;
  ``digits`` after the point (0: 1 for percentages, 3 otherwise)."""
  mean, std = stats["mean"][i], stats["std"][i]
  if mean is None:
    return "n/a"
  scale, digits = (100.0, digits or 1) if percent else (1.0, digits or 3)
  text = f"{scale * mean:.{digits}f}"
  return text if len(stats.get("values", [])) == 1 else f"{text} ± {scale * std:.{digits}f}"


def parse_variant(variant: str) -> Dict[str, object]:
  """``"a.b=1+c=x"`` -> ``{"a.b": 1, "c": "x"}``; ``"default"`` -> ``{}``.

  Values are Python literals where they parse as one, else strings.
  """
  if variant == "default":
    return {}
  overrides = {}
  for part in variant.split("+"):
    field, sep, text = part.partition("=")
    if not sep or not field:
      raise ValueError(f"variant {variant!r}: {part!r} is not FIELD=VALUE")
    try:
      overrides[field] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      overrides[field] = text
  return overrides


def apply_overrides(config, overrides: Dict[str, object]):
  """Sets each dotted ``FIELD`` of ``config``; a field it lacks is an error."""
  for field, value in overrides.items():
    *parents, leaf = field.split(".")
    node = config
    for name in parents:
      node = node.get(name) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ValueError(f"variant field {field!r} is not a config field")
    try:
      node[leaf] = value
    except TypeError:
      raise ValueError(f"variant field {field!r} takes a {type(node[leaf]).__name__}, "
                       f"not {value!r}") from None
  return config
