"""hmlc_jax.throughput: the model's FLOP count against the convolutions and dense
layers counted by hand, and the utilisation arithmetic of the run's record."""
import types

import jax.numpy as jnp
import ml_collections
import pytest

from hmlc_jax import throughput
from hmlc_jax.models import create_model
from tests.helpers import init_variables


def valid_taps(n: int) -> int:
  """Kernel taps that land inside an n x n image, summed over the outputs of a
  SAME 3x3 convolution (XLA counts no work on the zero padding)."""
  return (3 * n - 2) ** 2


def test_model_flops_per_view_is_the_layers_work_forward_and_backward():
  m = ml_collections.ConfigDict(dict(
      backbone="small_cnn", width=8, projection_dim=16, projection_hidden_dim=0,
      attention_activation="sigmoid", dtype="float32", convs_per_stage=1, space_to_depth=1,
      pool="mean", zero_init_residual=False))
  model = create_model(m, num_levels=2, attention_heads=False)
  x = jnp.ones((4, 16, 16, 1))
  variables = init_variables(model, x, train=False)
  got = throughput.model_flops_per_view(model, variables, x)
  # Forward, input gradient and kernel gradient of each layer (the first layer's
  # input is data: no input gradient); 1 -> 8 at 16x16, 8 -> 16 at 8x8,
  # 16 -> 32 at 4x4, then the head 32 -> 32 -> 16.
  convs = (2 * 2 * valid_taps(16) * 1 * 8 + 3 * 2 * valid_taps(8) * 8 * 16
           + 3 * 2 * valid_taps(4) * 16 * 32)
  dense = 3 * 2 * (32 * 32 + 32 * 16)
  # The rest (BatchNorm, ReLU, pools) is elementwise: at most a fifth on top.
  assert convs + dense <= got <= 1.2 * (convs + dense), (got, convs + dense)
  # Per view: twice the views, the same count (up to per-batch work such as the
  # BatchNorm statistics and the parameter updates).
  x8 = jnp.ones((8, 16, 16, 1))
  assert throughput.model_flops_per_view(model, variables, x8) == pytest.approx(got, rel=1e-3)


def test_summarise_on_cpu_divides_by_the_median_matmul_rate():
  matmul = types.SimpleNamespace(size=1000, times=[0.02, 0.01, 0.04])
  matmul.rates = lambda: throughput.Matmul.rates(matmul)           # 100, 200, 50 GFLOP/s
  cpu = types.SimpleNamespace(platform="cpu", device_kind="cpu")
  s = throughput.summarise(500.0, 2, 1e8, matmul, [cpu, cpu])
  assert s["model_gflops_per_sec"] == pytest.approx(500 * 2 * 1e8 / 1e9)      # 100
  assert s["matmul_gflops_per_sec"] == pytest.approx(100.0)
  assert s["matmul_gflops_per_sec_range"] == pytest.approx([50.0, 200.0])
  assert s["of_matmul"] == pytest.approx(1.0)
  two_hosts = throughput.summarise(500.0, 2, 1e8, matmul, [cpu] * 4, hosts=2)
  assert two_hosts["of_matmul"] == pytest.approx(0.5)
  line = throughput.describe(s)
  assert "100.0% of this CPU's float32 matmul (100.0 GFLOP/s, 50-200 in this run)" in line


def test_summarise_on_an_accelerator_is_mfu_against_the_data_sheet():
  gpu = types.SimpleNamespace(platform="gpu", device_kind="NVIDIA H100 80GB HBM3")
  s = throughput.summarise(1000.0, 2, 989e9, None, [gpu, gpu])
  assert s["peak_flops_per_device"] == 989e12
  assert s["mfu"] == pytest.approx(1000 * 2 * 989e9 / (2 * 989e12))
  assert "% MFU" in throughput.describe(s)
  unknown = types.SimpleNamespace(platform="gpu", device_kind="some other card")
  assert throughput.summarise(1000.0, 2, 1e9, None, [unknown])["mfu"] is None
  assert throughput.describe(throughput.summarise(None, 2, 1e9, None, [gpu])) == (
      "throughput: not measured")
