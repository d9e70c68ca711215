"""One driver for the command lines the tests run (`tests.runs.run_command`:
the runs of tests/runs.py, the refused ones of tests/test_bad_input.py, the
comparison and ablation runners, the benchmarks, the parity scripts): each
runs as its own process, forked from one that has already imported the
libraries, so the suite does not pay for a Python, JAX and scikit-learn
start-up per command (about 2 s each).

    python -m tests.driver        # tests/runs.py starts one per test process

It reads one JSON request a line, ``{"entry", "args", "env", "timeout"}``, and
answers each with one line ``{"returncode", "stdout", "stderr", "seconds"}``
until its input closes; with ``"announce": true`` a line ``{"pid"}`` comes
first, as soon as the command's process exists (for tests that signal it).
``entry`` is ``"main.py"`` or a module run with ``-m`` (``"hmlc_jax.compare"``);
``env`` replaces the child's environment, except that the ``JAX_*`` variables
must equal the driver's own (jax read them when the driver imported it).

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


def _use_environment(env):
  changed = sorted(k for k in set(env) | set(os.environ)
                   if k.startswith("JAX_") and env.get(k) != os.environ.get(k))
  if changed:
    raise SystemExit(f"tests.driver: {', '.join(changed)} differ from the driver's own, "
                     "which jax read at import; start a driver with them")
  os.environ.clear()
  os.environ.update(env)


def _child(entry, args, env, out_path, err_path):
  """Runs one command line as ``python entry args`` would; never returns."""
  code = 1
  with open(out_path, "w") as out, open(err_path, "w") as err:
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
  os.dup2(os.open(os.devnull, os.O_RDONLY), 0)      # the requests are the driver's
  sys.stdout = os.fdopen(1, "w", buffering=1)
  sys.stderr = os.fdopen(2, "w", buffering=1)
  sys.argv = [entry, *args]
  try:
    if env is not None:
      _use_environment(env)
    if entry.endswith(".py"):
      path = os.path.join(ROOT, entry)
      sys.path.insert(0, os.path.dirname(path))        # as `python path` does
      runpy.run_path(path, run_name="__main__")
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


def run_case(entry, args, env=None, timeout=120.0, started=None):
  with tempfile.TemporaryDirectory() as tmp:
    out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
    sys.stdout.flush()                   # nothing buffered is written twice
    sys.stderr.flush()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
      _child(entry, args, env, out_path, err_path)
    if started is not None:
      started(pid)
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


def serve():
  protocol = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)                          # anything else printed goes to stderr
  def answer(message):
    protocol.write(json.dumps(message) + "\n")
    protocol.flush()

  for line in sys.stdin:
    request = json.loads(line)
    started = (lambda pid: answer({"pid": pid})) if request.get("announce") else None
    answer(run_case(request["entry"], request["args"], request.get("env"),
                    request.get("timeout", 120.0), started))


def main():
  os.chdir(ROOT)
  serve()


if __name__ == "__main__":
  main()
