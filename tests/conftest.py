import os
import tempfile

# Tests see one CPU device unless a test starts its own subprocess.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# One persistent XLA compilation cache for the test session's workers and the
# main.py subprocesses they start (the SIGKILL/resume runs compile the same
# programs three times). Cached executables are bit-identical to fresh ones.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "hmlc_jax_test_xla_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
