"""hmlc_jax command line.

    python main.py --config=configs/hdigits_ghmlc.py [--workdir=runs/hdigits_ghmlc]
    python main.py --config=configs/cifar100_ghmlc.py:smoke --workdir=/tmp/smoke
    python main.py --config=configs/hdigits_ghmlc.py --mode=eval --workdir=runs/x
    python main.py --config=configs/hdigits_ghmlc.py --mode=tsne --workdir=runs/x
    python main.py --config=configs/hdigits_ghmlc.py --mode=levels --workdir=runs/x
    python main.py --config=configs/demo.py --mode=demo

`--config` takes a config file (optionally `file.py:variant`, e.g. `:smoke`);
any field can be overridden with `--config.FIELD=VALUE`. Training resumes from
the newest checkpoint in `--workdir`. Bad input ends with one line on stderr
and exit status 2.
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from hmlc_jax.cpu import cpu_devices_for, split_cpu
from hmlc_jax.data.tfds_io import quiet_tensorflow

quiet_tensorflow()            # before anything imports TensorFlow (tfds, clu's writers)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file, `path.py` or `path.py:variant` (e.g. configs/demo.py:smoke).",
    lock_config=True)
flags.DEFINE_string("workdir", None,
                    "Directory for checkpoints/, tensorboard/, config.json and results.json; "
                    "default runs/<config file name>. A rerun resumes from its newest checkpoint.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "tsne", "levels", "demo"],
                  "train: train (or resume), evaluate, write results.json; "
                  "eval: evaluate the newest checkpoint in --workdir again; "
                  "tsne: draw --workdir/tsne.png, t-SNE of test embeddings per level; "
                  "levels: how many feature groups the test embeddings carry (a "
                  "Dirichlet-process mixture) beside the label tree's depth, "
                  "--workdir/levels.json; "
                  "demo: evaluate every loss on a random batch (configs/demo.py).")
flags.DEFINE_bool("overwrite", False,
                  "Clear --workdir's checkpoints and results first. Without it, resuming a "
                  "workdir with a config that differs in a field that changes the training "
                  "(all but length, logging, saving and evaluation) is an error.")
flags.DEFINE_string("coordinator_address", None,
                    "Multi-process run: HOST:PORT of process 0 (or $JAX_COORDINATOR_ADDRESS).")
flags.DEFINE_integer("num_processes", None,
                     "Multi-process run: number of processes (or $JAX_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", None,
                     "Multi-process run: this process's index (or $JAX_PROCESS_ID).")
flags.DEFINE_bool("multihost", False,
                  "Multi-process run with JAX's own detection of the above (Cloud TPU pod "
                  "slices, Slurm, Open MPI).")
flags.DEFINE_integer("cpu_devices", 0,
                     "On a CPU-only machine, split the host into this many XLA devices and "
                     "pmap over them. 0: one per core, at most 8, dividing batch_size "
                     "(docs/benchmarks.md). Ignored on GPU/TPU.")


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
  is_demo_config = "num_levels" in config and "method" not in config
  if is_demo_config != (FLAGS.mode == "demo"):
    fail("--mode=demo takes configs/demo.py; --mode=train|eval|tsne|levels take a training config "
         "such as configs/hdigits_ghmlc.py")
  if FLAGS.mode == "demo":
    from hmlc_jax import demo   # after flag parsing: importing jax is slow
    try:
      demo.run(config)
    except ValueError as e:
      fail(str(e))
    return
  if "batch_size" in config:
    split_cpu(FLAGS.cpu_devices or cpu_devices_for(config.batch_size))
  from hmlc_jax import distributed, train, workdir as files
  from hmlc_jax.errors import NonFiniteError, UserInputError
  workdir = FLAGS.workdir or default_workdir()
  try:
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                           auto=FLAGS.multihost)
    if FLAGS.mode == "train":
      results = train.train_and_evaluate(config, workdir, overwrite=FLAGS.overwrite)
    elif FLAGS.mode == "eval":
      results = files.evaluate_workdir(config, workdir)
    elif FLAGS.mode == "tsne":
      print(f"wrote {files.tsne_workdir(workdir)}")
      return
    else:
      report = files.levels_workdir(workdir)
      sizes = ", ".join(f"{c['dims']} dims at mean |z| {c['mean']:.3f}"
                        for c in report["components"])
      print(f"{report['groups']} feature groups ({sizes}) in the test embeddings of "
            f"{report['method']}; the label tree has {report['label_depth']} levels "
            f"({', '.join(report['level_names'])}); wrote {files.path(workdir, files.LEVELS)}")
      return
  except UserInputError as e:
    fail(str(e))
  except NonFiniteError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if not distributed.is_lead():
    return
  if results.get("stopped_by"):
    print(f"{results['stopped_by']}: stopped after step {results['steps']} with a checkpoint "
          f"there; run the same command again to resume")
    return
  print(files.summary(results, workdir))
  if results.get("throughput"):
    from hmlc_jax import throughput
    print(throughput.describe(results["throughput"]))


def default_workdir() -> str:
  """runs/<config file stem>[_<variant>] next to the current directory."""
  path, _, variant = FLAGS["config"].config_filename.partition(":")
  stem = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("runs", stem + (f"_{variant}" if variant else ""))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
