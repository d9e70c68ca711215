"""One driver for command lines the tests run one after another (the refused
ones of tests/test_bad_input.py, the runs of tests/runs.py `run_all`): each
runs as its own process, forked from one that has already imported the
libraries, so the suite does not pay for a Python and TensorFlow start-up per
command.

    python -m tests.driver < cases.json > results.json

Input: a JSON list of ``[entry, args]`` where ``entry`` is ``"main.py"`` or a
module run with ``-m`` (``"hmlc_jax.compare"``). Output: a JSON list of
``{"returncode", "stdout", "stderr", "seconds"}`` in the same order.

The parent imports the libraries but never starts a JAX backend (nothing in
the imports computes), so every child chooses its own device count and
starts XLA as a fresh ``python main.py ...`` process would.
"""
import json
import os
import runpy
import signal
import sys
import tempfile
import time

from hmlc_jax.data.tfds_io import quiet_tensorflow

quiet_tensorflow()
# What main.py and the runners import after parsing their arguments.
import absl.app  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
import hmlc_jax.train  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
import hmlc_jax.compare  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
import hmlc_jax.ablation  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(entry, args, out_path, err_path):
  """Runs one command line as ``python entry args`` would; never returns."""
  code = 1
  with open(out_path, "w") as out, open(err_path, "w") as err:
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
  sys.stdout = os.fdopen(1, "w", buffering=1)
  sys.stderr = os.fdopen(2, "w", buffering=1)
  sys.argv = [entry, *args]
  try:
    if entry.endswith(".py"):
      runpy.run_path(os.path.join(ROOT, entry), run_name="__main__")
    else:
      sys.modules.pop(entry, None)        # imported above for its imports' sake
      runpy.run_module(entry, run_name="__main__", alter_sys=True)
    code = 0
  except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if not isinstance(e.code, (int, type(None))):
      print(e.code, file=sys.stderr)
  except BaseException:  # pylint: disable=broad-except
    import traceback
    traceback.print_exc()
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


def run_case(entry, args, timeout=120.0):
  with tempfile.TemporaryDirectory() as tmp:
    out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
      _child(entry, args, out_path, err_path)
    while True:
      done, status = os.waitpid(pid, os.WNOHANG)
      if done:
        break
      if time.perf_counter() - start > timeout:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        break
      time.sleep(0.01)
    seconds = time.perf_counter() - start
    with open(out_path) as f:
      stdout = f.read()
    with open(err_path) as f:
      stderr = f.read()
  return dict(returncode=os.waitstatus_to_exitcode(status), stdout=stdout, stderr=stderr, seconds=seconds)


def main():
  os.chdir(ROOT)
  cases = json.load(sys.stdin)
  results = [run_case(entry, args) for entry, args in cases]
  json.dump(results, sys.stdout)


if __name__ == "__main__":
  main()
