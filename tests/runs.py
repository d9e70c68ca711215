"""main.py runs for the run tests, and the one reference run they share.

The reference (hdigits G-HMLC smoke, 30 steps, a checkpoint every 3, an
evaluation every 10) is
trained once per test session, whichever xdist worker asks first; the others
wait on a lock and read it. Tests that write into a run work on a copy.
Only the reference writes TensorBoard events and measures its throughput (its
tests read them): the other runs set ``tensorboard=False``, which spares each
the 5-8 s TensorFlow import, and ``throughput=False`` (about 1 s).
"""
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import xla_flags

ROOT = Path(__file__).resolve().parents[1]
SCORES = ("linear_probe_accuracy", "knn_accuracy", "hierarchical_consistency",
          "embedding_variance", "train_loss", "steps")
STEPS, LOG_EVERY = 30, 10
EVAL_EVERY = 10          # the reference and the SIGKILL run also evaluate at steps 10 and 20
ARGS = ["--config=configs/hdigits_ghmlc.py:smoke", f"--config.num_train_steps={STEPS}",
        "--config.checkpoint_every_steps=3", f"--config.log_every_steps={LOG_EVERY}",
        "--config.tensorboard=False", "--config.throughput=False"]


def command(workdir, *extra):
  return [sys.executable, "main.py", *ARGS, f"--workdir={workdir}", *extra]


def environment(devices=1):
  """A test subprocess's environment: ``devices`` CPU devices (None: no count)."""
  env = {k: v for k, v in os.environ.items()           # a test machine's multi-host settings
         if k not in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")}
  return dict(env, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(devices))


_driver = None


class Started:
  """A command running in a process forked from the driver (`start_command`)."""

  def __init__(self, args, driver):
    self.args, self._driver = args, driver
    self.pid = _answer(driver)["pid"]

  def running(self) -> bool:
    try:
      os.kill(self.pid, 0)
      return True
    except ProcessLookupError:
      return False

  def finish(self) -> subprocess.CompletedProcess:
    """Waits for the command; its stdout, stderr, returncode and ``seconds``."""
    answer = _answer(self._driver)
    done = subprocess.CompletedProcess(self.args, answer["returncode"], answer["stdout"],
                                       answer["stderr"])
    done.seconds = answer["seconds"]
    return done


def _answer(driver) -> dict:
  line = driver.stdout.readline()
  assert line, "the tests' driver process ended"
  return json.loads(line)


def start_command(entry, args, env=None, timeout=300) -> Started:
  """Starts ``python entry args`` (``entry``: ``"main.py"`` or a module for
  ``-m``) in a process forked from this test process's driver (tests/driver.py),
  which has imported the libraries once; ``env`` defaults to `environment()`.
  Call ``finish()`` on the result before the next command."""
  global _driver
  if _driver is None or _driver.poll() is not None:
    _driver = subprocess.Popen([sys.executable, "-m", "tests.driver"], cwd=ROOT,
                               env=environment(), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  args = [str(a) for a in args]
  request = dict(entry=entry, args=args, env=env or environment(), timeout=timeout,
                 announce=True)
  _driver.stdin.write(json.dumps(request) + "\n")
  _driver.stdin.flush()
  return Started([entry, *args], _driver)


def run_command(entry, args, env=None, timeout=300) -> subprocess.CompletedProcess:
  """`start_command` and its ``finish()``: stdout, stderr and returncode as
  `subprocess.run` gives them, and ``seconds``."""
  return start_command(entry, args, env, timeout).finish()


def run(workdir, *extra):
  """The reference's command (`command`) with ``extra`` flags, through `run_command`."""
  return run_command("main.py", command(workdir, *extra)[2:])


def results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def checkpoint_steps(workdir):
  path = os.path.join(workdir, "checkpoints")
  return sorted(int(p) for p in os.listdir(path) if p.isdigit()) if os.path.isdir(path) else []


def kill_after_first_checkpoint(args, workdir, timeout=240) -> list:
  """Starts ``main.py args``, SIGKILLs it once ``workdir`` holds a checkpoint, and
  returns the checkpoint steps it left."""
  import signal   # pylint: disable=import-outside-toplevel
  import time     # pylint: disable=import-outside-toplevel
  proc = start_command("main.py", args)
  deadline = time.time() + timeout
  while not checkpoint_steps(workdir) and time.time() < deadline and proc.running():
    time.sleep(0.02)
  os.kill(proc.pid, signal.SIGKILL)
  assert proc.finish().returncode == -signal.SIGKILL
  return checkpoint_steps(workdir)


def shared_reference(tmp_path_factory):
  """``(workdir, stdout, stderr)`` of the session's reference run (read-only)."""
  base = tmp_path_factory.getbasetemp()
  uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
  root = base.parent / f"shared-{uid}" if uid else base / "shared"
  root.mkdir(parents=True, exist_ok=True)
  workdir, log = root / "reference", root / "reference.json"
  with open(root / "reference.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not log.exists():
      done = run(workdir, "--config.tensorboard=True", "--config.throughput=True",
                 f"--config.eval.every_steps={EVAL_EVERY}")
      assert done.returncode == 0, done.stderr[-2000:]
      log.write_text(json.dumps(dict(stdout=done.stdout, stderr=done.stderr)))
  out = json.loads(log.read_text())
  return workdir, out["stdout"], out["stderr"]


def copy_of(workdir, destination):
  shutil.copytree(workdir, destination)
  return Path(destination)
