"""Which modules a run's set-up passes through, from `train.train_and_evaluate`
to the first training step.

    python tools/setup_path.py --config=configs/hdigits_ghmlc.py:smoke [--repo=.]

Runs ``main.py --mode=train`` of the repository ``--repo`` (default: the
current folder) in this process under `sys.setprofile`, watching the
functions defined in that repository's ``main.py`` and ``hmlc_jax/`` (module
imports left out) from the moment ``train_and_evaluate`` is called until the
training step is first traced (``train_step`` entered); then it prints a JSON
summary and exits:

* ``entries``: per module, how often control moved into it from another
  repository module, by a call or by a return;
* ``climbs``: how many of those moves were returns (control going back up
  the layers before going down again);
* ``stages``: the modules of the functions that ``hmlc_jax/train.py`` itself
  calls, in order (consecutive repeats merged): the set-up's outline.

A set-up written as a straight line calls each stage's module about once from
``train.py``.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile


class Recorder:
  """Profile hook counting moves of control between repository modules."""

  def __init__(self, repo: str):
    self.repo = os.path.abspath(repo) + os.sep
    self.entries, self.stages, self.climbs = collections.Counter(), [], 0
    self.cache, self.current, self.started = {}, None, False

  def own(self, code):
    """The repository module that defines ``code`` (not a module body), or None."""
    if code not in self.cache:
      file = code.co_filename
      mine = (code.co_name != "<module>" and file.startswith(self.repo)
              and (file.endswith("main.py") or f"{os.sep}hmlc_jax{os.sep}" in file))
      self.cache[code] = os.path.relpath(file, self.repo) if mine else None
    return self.cache[code]

  def caller(self, frame):
    """The repository module of the nearest repository frame above ``frame``."""
    frame = frame.f_back
    while frame is not None:
      module = self.own(frame.f_code)
      if module:
        return module
      frame = frame.f_back
    return None

  def move(self, module, by_return: bool) -> None:
    if module and module != self.current:
      self.entries[module] += 1
      self.climbs += by_return
      self.current = module

  def __call__(self, frame, event, arg):   # pylint: disable=unused-argument
    if event not in ("call", "return"):
      return
    here = self.own(frame.f_code)
    if here is None:
      return
    name = frame.f_code.co_name
    if event == "call" and name == "train_and_evaluate":
      self.started, self.current = True, here
      return
    if not self.started:
      return
    if event == "call" and name == "train_step":
      self.report()
      os._exit(0)                          # the set-up is over: no need to train
    if event == "call":
      if self.caller(frame) == TRAIN and here != TRAIN and (
          not self.stages or self.stages[-1] != here):
        self.stages.append(here)
      self.move(here, by_return=False)
    else:
      self.move(self.caller(frame), by_return=True)

  def report(self):
    sys.setprofile(None)
    summary = {"stages": self.stages, "entries": dict(self.entries.most_common()),
               "climbs": self.climbs}
    print(json.dumps(summary, indent=1), flush=True)
    if ARGS.json:
      with open(ARGS.json, "w") as f:
        json.dump(summary, f, indent=1)


TRAIN = os.path.join("hmlc_jax", "train.py")


def main():
  repo = os.path.abspath(ARGS.repo)
  os.chdir(repo)
  sys.path.insert(0, repo)
  workdir = tempfile.mkdtemp(prefix="setup_path_")
  sys.argv = ["main.py", f"--config={ARGS.config}", f"--workdir={workdir}",
              "--config.progress_bar=False", "--config.tensorboard=False"]
  import runpy   # pylint: disable=import-outside-toplevel
  recorder = Recorder(repo)
  sys.setprofile(recorder)
  runpy.run_path(os.path.join(repo, "main.py"), run_name="__main__")


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="configs/hdigits_ghmlc.py:smoke")
  parser.add_argument("--repo", default=".")
  parser.add_argument("--json", default="")
  ARGS = parser.parse_args()
  main()
