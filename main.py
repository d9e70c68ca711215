"""hmlc_jax command line.

    python main.py --config=configs/demo.py [--config.batch_size=1024 ...]

`--config` takes a config file (optionally `file.py:variant`, e.g. `:smoke`);
any field can be overridden with `--config.FIELD=VALUE`. Bad input ends with
one line on stderr and exit status 2.
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file, `path.py` or `path.py:variant` (e.g. configs/demo.py:smoke).",
    lock_config=True)
flags.DEFINE_string("workdir", None,
                    "Directory for checkpoints, logs and results.json (training modes).")
flags.DEFINE_enum("mode", "demo", ["demo"],
                  "demo: evaluate every loss on a random hierarchical batch and print a table.")


def fail(message: str) -> None:
  """Reports bad input in one line and exits with status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def last_line(error: Exception) -> str:
  """The informative line of an error whose text may hold a traceback."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


def parse_flags(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:                 # a config file's own error comes with a traceback
    lines = str(e).splitlines()
    fail(lines[0] if len(lines) == 1 else f"{lines[0].split(': ')[0]}: {last_line(e)}")
  except (AttributeError, KeyError) as e:  # --config.FIELD=... naming no field
    fail(f"--config override names a field the config does not have: {last_line(e)}")


def load_config():
  if FLAGS["config"].value is None:
    fail("--config is required, e.g. --config=configs/demo.py")
  try:
    FLAGS.config.keys()                 # config files load lazily: surface errors now
  except OSError as e:
    fail(f"cannot load --config: {last_line(e)}")
  return FLAGS.config


def main(argv):
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  config = load_config()
  from hmlc_jax import demo   # after flag parsing: importing jax is slow
  try:
    demo.run(config)
  except ValueError as e:
    fail(str(e))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
