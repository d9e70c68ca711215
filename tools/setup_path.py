"""Which modules a run's set-up passes through, from main.py to the first training step.

    python tools/setup_path.py --config=configs/hdigits_ghmlc.py:smoke [--repo=.]

Runs ``main.py --mode=train`` of the repository ``--repo`` (default: the
current folder) in this process under `sys.setprofile`, watching the
functions defined in that repository's ``main.py`` and ``hmlc_jax/``, until
the training step is first traced (``train_step`` entered); then prints and
exits. Reported:

* the path: the repository modules in the order control entered them by a
  call from another module (consecutive entries of one module merged);
* per module, how often it was entered by a call from another module;
* climbs: how often a function returned into a caller in another module, i.e.
  control went back up the layers before going down again.

A set-up written as a straight line enters each stage's module about once
and climbs about once per stage.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile


class Recorder:
  """Profile hook counting module entries and climbs between repository files."""

  def __init__(self, repo: str):
    self.repo = os.path.abspath(repo) + os.sep
    self.entries, self.path, self.climbs = collections.Counter(), [], 0
    self.cache = {}

  def own(self, code):
    """The repository module that defines ``code``, or None (cached per code object)."""
    if code not in self.cache:
      file = code.co_filename
      mine = file.startswith(self.repo) and (file.endswith("main.py") or
                                             f"{os.sep}hmlc_jax{os.sep}" in file)
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

  def __call__(self, frame, event, arg):   # pylint: disable=unused-argument
    if event not in ("call", "return"):
      return
    here = self.own(frame.f_code)
    if here is None:
      return
    if event == "call" and frame.f_code.co_name == "train_step":
      self.report()
      os._exit(0)                          # the set-up is over: no need to train
    caller = self.caller(frame)
    if caller is None or caller == here:
      return
    if event == "call":
      self.entries[here] += 1
      if not self.path or self.path[-1] != here:
        self.path.append(here)
    else:
      self.climbs += 1

  def report(self):
    sys.setprofile(None)
    summary = {"path": self.path, "entries": dict(self.entries.most_common()),
               "climbs": self.climbs}
    print(json.dumps(summary, indent=1), flush=True)
    if ARGS.json:
      with open(ARGS.json, "w") as f:
        json.dump(summary, f, indent=1)


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
