"""benchmarks/bench_train_step.py runs several configs side by side and writes the
documented JSON (one object per config path)."""
import json

import pytest

from tests.runs import environment, run_command

KEYS = {"examples_per_sec", "step_ms", "compile_s", "peak_memory_bytes", "flops_per_step",
        "mfu"}


# The benchmark smoke tests share the hdigits smoke configs at a global batch of
# 32, so that their processes compile the same steps (the compilation cache
# serves the later ones).


def bench(script, *args):
  """``python benchmarks/<script> args`` with the device count left to the script."""
  return run_command(f"benchmarks/{script}", args, environment(devices=None))


def test_train_step_benchmark_smoke(tmp_path):
  configs = ["configs/hdigits_supcon.py:smoke", "configs/hdigits_ghmlc.py:smoke"]
  out = tmp_path / "bench.json"
  run = bench("bench_train_step.py", f"--configs={','.join(configs)}", "--steps=3",
              "--warmup=1", "--batch_size=32", f"--json={out}")
  assert run.returncode == 0, run.stderr[-2000:]
  results = json.loads(out.read_text())
  assert list(results) == configs
  for path, r in results.items():
    assert KEYS <= set(r), path
    assert r["batch_size"] == 32 and len(r["step_ms_all"]) == 3
    assert sorted(r["step_ms_all"])[1] == r["step_ms"]                 # the median
    assert abs(r["examples_per_sec"] * r["step_ms"] / 1e3 - 32) < 1e-6
    assert r["flops_per_step"] > 0 and r["mfu"] is None and r["platform"] == "cpu"
    # The matmul is timed in every round; the share is the median of the rounds' ratios.
    assert len(r["matmul_gflops_per_sec_rounds"]) == len(r["matmul_rate_rounds"]) == 3
    assert r["matmul_rate"] == sorted(r["matmul_rate_rounds"])[1]
    view_flops = 32 * 2 * r["model_flops_per_view"]
    for t, m, ratio in zip(r["step_ms_all"], r["matmul_gflops_per_sec_rounds"],
                           r["matmul_rate_rounds"]):
      assert abs(ratio - view_flops / (t / 1e3) / 1e9 / m) < 1e-9 * ratio
  assert "| configs/hdigits_ghmlc.py:smoke | ghmlc | 32 |" in run.stdout


def test_cpu_device_split_benchmark_runs_each_variant_with_its_device_count(tmp_path):
  out = tmp_path / "split.json"
  run = bench("bench_cpu_devices.py", "--configs=configs/hdigits_supcon.py:smoke",
              "--variants=1,2", "--rounds=1", "--steps=2", "--warmup=1", "--batch_size=32",
              f"--json={out}")
  assert run.returncode == 0, run.stderr[-2000:]
  results = json.loads(out.read_text())
  assert list(results) == ["1", "2"]
  for variant, devices in (("1", 1), ("2", 2)):
    r = results[variant]["configs/hdigits_supcon.py:smoke"]
    assert r["devices"] == devices and len(r["round_step_ms"]) == 1
    assert r["step_ms"] == r["round_step_ms"][0] and r["step_ms"] > 0
  speed_up = (results["1"]["configs/hdigits_supcon.py:smoke"]["step_ms"]
              / results["2"]["configs/hdigits_supcon.py:smoke"]["step_ms"])
  assert "| 2 | 2 | configs/hdigits_supcon.py:smoke |" in run.stdout
  assert f"{speed_up:.2f}x |" in run.stdout


def test_cpu_device_split_benchmark_rejects_a_bad_variant(tmp_path):
  run = bench("bench_cpu_devices.py", "--variants=two")
  assert run.returncode == 2 and "must start with a positive device count" in run.stderr
  assert "Traceback" not in run.stderr


def test_loss_memory_benchmark_reports_xla_memory_of_dense_and_blockwise(tmp_path):
  out = tmp_path / "memory.json"
  run = bench("bench_loss_memory.py", "--batch=512", "--block_rows=64",
              "--losses=supcon,ghmlc", f"--json={out}")
  assert run.returncode == 0, run.stderr[-2000:]
  rows = json.loads(out.read_text())["results"]
  assert [r["loss"] for r in rows] == ["supcon", "ghmlc"]
  for r in rows:
    assert r["rows"] == 1024 and r["block_rows"] == 64
    assert r["dense"]["temp_mib"] >= 4.0                   # one 1024 x 1024 float32 at least
    # G-HMLC's masks and per-level unit features are a fixed part (12 of 23 MiB
    # at this size with the batch-fit masks) that blocks do not shrink.
    assert r["blockwise"]["temp_mib"] < 0.6 * r["dense"]["temp_mib"]
    assert f"| {r['loss']} | 1024 | {r['dense']['temp_mib']:.0f} |" in run.stdout


def test_default_run_benchmark_times_the_real_training_loop(tmp_path):
  out = tmp_path / "run.json"
  run = bench("bench_default_run.py", "--config=configs/hdigits_ghmlc.py:smoke",
              "--cpu_devices=2", "--rounds=1", "--from_step=2", "--to_step=4", f"--json={out}",
              # no TensorFlow import for TensorBoard, no matmul timing
              "--main_flags=--config.tensorboard=False --config.throughput=False")
  assert run.returncode == 0, run.stderr[-2000:]
  result = json.loads(out.read_text())
  [seconds] = result["seconds_per_step"]["2"]
  assert 0 < seconds < 30 and (result["from_step"], result["to_step"]) == (2, 4)
  assert f"| 2 | {seconds:.3f} | {seconds:.3f} | 1.00x |" in run.stdout


@pytest.mark.parametrize("config", ["hdigits_ghmlc", "hfashion_ghmlc", "hdigits_ghmlc@s2d1"])
def test_conv_shapes_follow_the_small_cnn(config):
  """The benchmarks' layer list against the convolutions the model really runs."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from benchmarks.bench_train_step import IMAGE_SHAPES, conv_shapes
  from hmlc_jax.models import create_model
  from tests.smoke import smoke_config
  name, _, variant = config.partition("@")
  c = smoke_config(name)
  c.model.width = 8
  if variant:                                     # the plain stem: two convs a stage
    c.model.update(space_to_depth=1, convs_per_stage=2)
  side, channels = IMAGE_SHAPES[c.dataset.name]
  model = create_model(c.model, num_levels=2, attention_heads=False)
  x = jax.ShapeDtypeStruct((2, side, side, channels), jnp.float32)      # shapes only
  variables = jax.eval_shape(lambda x_: model.init(jax.random.key(0), x_, train=False), x)
  is_conv = lambda module, _: isinstance(module, nn.Conv)
  _, seen = jax.eval_shape(lambda v, x_: model.apply(
      v, x_, train=False, capture_intermediates=is_conv, mutable=["intermediates"]),
      variables, x)
  convs = jax.tree_util.tree_flatten_with_path(seen["intermediates"])[0]
  expected = []
  for path, out in sorted(convs, key=lambda kv: jax.tree_util.keystr(kv[0])):
    kernel = variables["params"]["backbone"][path[1].key]["kernel"]
    expected.append((out.shape[1], kernel.shape[2], kernel.shape[3]))
  assert conv_shapes(c.model, side, channels) == expected


def test_conv_floor_benchmark_times_the_convolutions_beside_the_step(tmp_path):
  out = tmp_path / "floor.json"
  run = bench("bench_conv_floor.py", "--config=configs/hdigits_supcon.py:smoke",
              "--batch_size=32", "--rounds=3", "--warmup=1", f"--json={out}")
  assert run.returncode == 0, run.stderr[-2000:]
  r = json.loads(out.read_text())
  assert r["layers"] == [[16, 4, 4], [16, 4, 8], [8, 8, 16]]      # width 4, 2x2 stem
  assert r["views_per_device"] * r["devices"] == 64 and len(r["conv_ms_all"]) == 3
  assert r["conv_ms"] == sorted(r["conv_ms_all"])[1]
  assert r["step_ms"] == sorted(r["step_ms_all"])[1]
  assert r["conv_flops"] > 0
  assert r["conv_share_of_step"] == pytest.approx(r["conv_ms"] / r["step_ms"])
  layers = "4->4 at 16x16, 4->8 at 16x16, 8->16 at 8x8"
  assert f"| convolutions alone ({layers}) | {r['conv_ms']:.1f} |" in run.stdout
