"""The losses-only install: `pip install .` brings jax and numpy, and the
losses, the GMM and the label-tree helpers import nothing of the training
system (TensorFlow, tensorflow-datasets, orbax, clu, flax, optax, ml_collections)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINING_ONLY = ("tensorflow", "tensorflow_datasets", "orbax", "clu", "flax", "optax",
                 "ml_collections", "sklearn", "matplotlib", "absl")
CHECK = """
import sys
import hmlc_jax.losses, hmlc_jax.gmm, hmlc_jax.hierarchy
bad = sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:]))
print(' '.join(bad))
"""


def requirement_names(path):
  names = []
  for line in (ROOT / path).read_text().splitlines():
    line = line.split("#")[0].strip()
    if line:
      names.append(re.match(r"[A-Za-z0-9_.\-]+", line).group(0).lower())
  return names


def imported_training_modules(modules=TRAINING_ONLY, code=CHECK):
  out = subprocess.run([sys.executable, "-c", code, *modules], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={"PATH": "", "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, out.stderr
  return out.stdout.split()


def test_core_requirements_are_jax_and_numpy():
  assert sorted(requirement_names("requirements.txt")) == ["jax", "numpy"]
  train = requirement_names("requirements-train.txt")
  assert {"flax", "optax", "orbax-checkpoint", "tensorflow-datasets"} <= set(train)
  pyproject = (ROOT / "pyproject.toml").read_text()
  assert 'dependencies = { file = ["requirements.txt"] }' in pyproject
  assert 'optional-dependencies.train = { file = ["requirements-train.txt"] }' in pyproject


def test_the_losses_import_nothing_of_the_training_system():
  assert imported_training_modules() == []


def test_the_import_check_sees_a_training_import():
  """The check itself: a module that pulls in flax (and its absl) is reported."""
  code = CHECK.replace("hmlc_jax.hierarchy", "hmlc_jax.hierarchy, flax")
  assert imported_training_modules(code=code).count("flax") == 1
