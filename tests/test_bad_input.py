"""Command lines that must be refused: one line on stderr naming the problem,
exit status 2, no traceback, and the workdir (or output folder) not created.

All cases run from the test process's driver (`tests.runs.run_command`), each
in a process of its own forked from one that has already imported the libraries.
"""
import pytest

from tests.runs import environment, run_command

SMOKE = "--config=configs/hdigits_ghmlc.py:smoke"
DEMO = ["--config=configs/demo.py:smoke", "--mode=demo"]
MULTI = [SMOKE, "--config.num_train_steps=6"]

# (entry, arguments, fragment of the one line); the output path is appended.
CASES = {
    "missing config file": ("main.py", ["--config=configs/missing.py"], "No such file"),
    "unknown method": ("main.py", [SMOKE, "--config.method=hmlc"], "unknown method 'hmlc'"),
    "unknown backbone": ("main.py", [SMOKE, "--config.model.backbone=vgg"], "model.backbone"),
    "unknown data set": ("main.py", [SMOKE, "--config.dataset.name=mnist"],
                         "unknown dataset.name 'mnist'"),
    "unknown optimiser": ("main.py", [SMOKE, "--config.optimizer=rmsprop"],
                          "unknown optimizer"),
    "negative learning rate": ("main.py", [SMOKE, "--config.learning_rate=-1"],
                               "learning_rate must be positive"),
    "devices not dividing the batch": ("main.py", [SMOKE, "--cpu_devices=3"], "not divisible"),
    "missing ModelNet40 folder": ("main.py", ["--config=configs/modelnet40_ghmlc.py:smoke",
                                              "--config.dataset.data_dir=/nonexistent"],
                                  "/nonexistent"),
    "folder data set without a path": ("main.py", ["--config=configs/folder_ghmlc.py:smoke"],
                                       "needs dataset.path"),
    "folder data set, no such folder": ("main.py", ["--config=configs/folder_ghmlc.py:smoke",
                                                    "--config.dataset.path=/nonexistent/tree"],
                                        "/nonexistent/tree is not a folder"),
    "a loader of one's own that is not there": (
        "main.py", [SMOKE, "--config.dataset.name=no_such_module:load"],
        "cannot import no_such_module"),
    "demo mode, training config": ("main.py", [SMOKE, "--mode=demo"],
                                   "--mode=demo takes configs/demo.py"),
    "unknown config variant": ("main.py", ["--config=configs/demo.py:huge"],
                               "unknown variant 'huge'"),
    "unknown config field": ("main.py", [*DEMO, "--config.no_such_field=1"], "no_such_field"),
    "field of the wrong type": ("main.py", [*DEMO, "--config.batch_size=many"], "batch_size"),
    "zero temperature (demo)": ("main.py", [*DEMO, "--config.temperature=0"], "temperature"),
    "unknown gmm.order": ("main.py", [*DEMO, "--config.gmm.order=random"], "gmm.order"),
    "unknown level weights": ("main.py", [*DEMO, "--config.level_weights=cubic"],
                              "level_weights"),
    "no levels": ("main.py", [*DEMO, "--config.num_levels=0"], "num_levels"),
    "unknown mode": ("main.py", [*DEMO, "--mode=fly"], "--mode"),
    "stray argument": ("main.py", [*DEMO, "stray"], "unexpected arguments"),
    "no config": ("main.py", [], "--config is required"),
    "zero batch": ("main.py", [SMOKE, "--config.batch_size=0"], "batch_size must be at least 1"),
    "negative temperature": ("main.py", [SMOKE, "--config.temperature=-0.1"], "temperature"),
    "unknown nan_policy": ("main.py", [SMOKE, "--config.nan_policy=ignore"],
                           "unknown nan_policy 'ignore'"),
    "no such feature folder": ("main.py", [SMOKE, "--config.eval.feature_dir=/nonexistent/f"],
                               "eval.feature_dir '/nonexistent/f' is not a folder"),
    "zero max_skips": ("main.py", [SMOKE, "--config.max_skips=0"],
                       "max_skips must be at least 1"),
    "unknown eval split": ("main.py", [SMOKE, "--config.dataset.eval_split=val"],
                           "dataset.eval_split"),
    "eval without a checkpoint": ("main.py", [SMOKE, "--mode=eval"], "no checkpoint"),
    "t-SNE without a run": ("main.py", [SMOKE, "--mode=tsne"], "not found"),
    "processes without coordinator": ("main.py", [*MULTI, "--num_processes=2",
                                                  "--process_id=0"],
                                      "needs --coordinator_address"),
    "coordinator without port": ("main.py", [*MULTI, "--coordinator_address=127.0.0.1",
                                             "--num_processes=2", "--process_id=0"],
                                 "HOST:PORT"),
    "process id out of range": ("main.py", [*MULTI, "--coordinator_address=127.0.0.1:1",
                                            "--num_processes=2", "--process_id=2"],
                                "--process_id must lie in [0, 2)"),
    "zero processes": ("main.py", [*MULTI, "--num_processes=0"],
                       "--num_processes must be at least 1"),
    "compare: unknown method": ("hmlc_jax.compare", ["--suite=hdigits", "--smoke",
                                                     "--methods=hmce,nope"],
                                "unknown method 'nope'"),
    "compare: no such config file": ("hmlc_jax.compare", ["--config=configs/nope.py"],
                                     "--config configs/nope.py: no such file"),
    "compare: no seeds": ("hmlc_jax.compare", ["--suite=hdigits", "--smoke", "--seeds=0"],
                          "--seeds must be at least 1"),
    "ablation: unknown field": ("hmlc_jax.ablation",
                                ["--suite=hdigits", "--smoke",
                                 "--variants=default,gmm.mask_gradient=soft"],
                                "not a config field"),
    "ablation: no value": ("hmlc_jax.ablation", ["--suite=hdigits", "--smoke",
                                                 "--variants=default,temperature"],
                           "FIELD=VALUE"),
    "ablation: value of the wrong type": ("hmlc_jax.ablation",
                                          ["--suite=hdigits", "--smoke",
                                           "--variants=default,temperature=warm"],
                                          "takes a float"),
    "ablation: unknown method": ("hmlc_jax.ablation", ["--suite=hdigits", "--smoke",
                                                       "--variants=default,method=nope"],
                                 "unknown method"),
}


def output_flag(entry, path):
  return f"--workdir={path}" if entry == "main.py" else f"--out={path}"


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
  """name -> (the driver's result, the output path the command was given)."""
  base = tmp_path_factory.mktemp("bad_input")
  env = environment(devices=None)                    # main.py picks the device count
  out = {}
  for i, (name, (entry, args, _)) in enumerate(CASES.items()):
    path = base / f"case{i}"
    out[name] = run_command(entry, [*args, output_flag(entry, path)], env, timeout=120), path
  return out


@pytest.mark.parametrize("name", list(CASES))
def test_refused_in_one_line_with_status_2(refused, name):
  result, path = refused[name]
  assert result.returncode == 2, result
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
  assert lines[0].startswith("error: ") or "FATAL Flags parsing error" in lines[0], lines
  assert CASES[name][2] in lines[0]
  assert result.seconds < 30
  assert not path.exists()


def test_the_tests_driver_refuses_jax_settings_it_did_not_import_with():
  """A command given other ``JAX_*`` variables than the driver's would silently
  run with the driver's (jax read them at import): it is refused instead."""
  env = dict(environment(), JAX_ENABLE_X64="1")
  done = run_command("main.py", ["--help"], env)
  assert done.returncode == 1
  assert "JAX_ENABLE_X64 differ from the driver's own" in done.stderr
