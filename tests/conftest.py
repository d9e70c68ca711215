import os
import tempfile

from tests.helpers import TEST_XLA_FLAGS

# Tests see one CPU device unless a test starts its own subprocess.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# One persistent XLA compilation cache for the test session's workers and the
# main.py subprocesses they start (the SIGKILL/resume runs compile the same
# programs three times). Cached executables are bit-identical to fresh ones.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "hmlc_jax_test_xla_cache"))
# Every program, however quick to compile: a repeated main.py run then compiles
# nothing (measured: 8.4 s -> 6.3 s a run with the 0.5 s threshold before).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Faster compiles for the test processes (tests/helpers.py: TEST_XLA_FLAGS);
# subprocesses get them through tests.helpers.xla_flags or this environment.
if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{TEST_XLA_FLAGS} {os.environ.get('XLA_FLAGS', '')}".strip()

# The longest files first (their test times in a 2-worker run, empty cache), so
# that with `-n 2 --dist loadfile` no long file starts last and runs alone at the
# end. test_learning and test_train compile the same steps (tests/smoke.py).
LONGEST_FIRST = ["test_reliability.py", "test_losses.py", "test_benchmarks.py",
                 "test_train.py", "test_gmm.py", "test_training_runs.py", "test_compare.py",
                 "test_degenerate.py", "test_dp_gmm.py", "test_models.py", "test_multihost.py",
                 "test_main.py", "test_multidevice.py", "test_learning.py",
                 "test_configs_cifar100.py", "test_notebook.py", "test_bad_input.py",
                 "test_augment.py", "test_ablation.py", "test_configs_hdigits.py",
                 "test_configs_points.py", "test_conv.py", "test_data_hmnist.py",
                 "test_data_loaders.py"]


def pytest_configure(config):
  # pytest-xdist would otherwise hand out the files by their number of tests,
  # not in the order below.
  if hasattr(config.option, "loadscopereorder"):
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: file order kept
