"""How fast a run trains against what its devices can do: model FLOPs and utilisation.

A run's rate is ``examples/s x views x forward+backward FLOPs per view of the
model`` (backbone and heads, XLA's count; augmentation, loss and optimiser are
left out, as MFU is usually defined). On GPU and TPU it is divided by the
devices' dense bf16 peak (MFU). A CPU has no data-sheet peak, so the reference
is a jitted float32 ``MATMUL_SIZE``-square matmul timed on the same machine,
in the same process, just before and just after the timed training steps
(this shared machine's matmul rate drifts by a third within minutes).

    matmul = throughput.measure_reference()     # CPU: before the timed steps
    ...                                          # the timed steps
    throughput.measure_reference(matmul)         # and after them
    flops = throughput.model_flops_per_view(model, variables, views)
    record = throughput.summarise(examples_per_sec, num_views, flops, matmul,
                                  jax.devices(), jax.process_count())

``train.train_and_evaluate`` writes the summary to ``results.json["throughput"]`` when
``config.throughput`` is set; ``benchmarks/bench_train_step.py`` uses the
same counts.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Dense bf16 peak FLOP/s per device (vendor data sheets), by device_kind substring.
PEAK_BF16 = (("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("L4", 121e12),
             ("TPU v6", 918e12), ("TPU v5p", 459e12), ("TPU v5", 197e12),
             ("TPU v4", 275e12), ("TPU v3", 123e12), ("TPU v2", 46e12))
MATMUL_SIZE = 2048
MATMUL_REPEATS = 3


def peak_flops(device) -> Optional[float]:
  """The device's dense bf16 peak FLOP/s, or None (CPU, or a device not in the table)."""
  if device.platform == "cpu":
    return None
  return next((peak for key, peak in PEAK_BF16 if key in device.device_kind), None)


def flops_of(program) -> Optional[float]:
  """FLOPs of one device's program from XLA's cost analysis of a lowered or
  compiled program (None if the backend reports none)."""
  try:
    cost = program.cost_analysis()
  except Exception:   # some backends do not implement it
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  flops = (cost or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


@contextlib.contextmanager
def xla_conv_grads(xla: bool = True):
  """While tracing: XLA's own convolution kernel gradients if ``xla``, else the
  library's (``hmlc_jax.models.conv``, a patch-matmul loop on CPU that XLA's
  cost analysis would count once instead of once per chunk)."""
  from jax import lax
  from hmlc_jax.models import conv, layers
  layers.conv_general_dilated = lax.conv_general_dilated if xla else conv.conv_general_dilated
  try:
    yield
  finally:
    layers.conv_general_dilated = conv.conv_general_dilated


def model_flops_per_view(model, variables, views: jnp.ndarray) -> Optional[float]:
  """XLA's FLOPs of the model's forward+backward (train mode, gradient in the
  parameters) per input view; ``views`` is a batch of model inputs. Counted on
  the lowered program (no compile; the hdigits model's count after XLA's
  optimisations is 0.5% higher)."""

  def loss(params, x):
    out, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                         train=True, mutable=["batch_stats"])
    return sum(jnp.sum(v) for v in jax.tree.leaves(out))

  with xla_conv_grads():
    lowered = jax.jit(jax.grad(loss)).lower(variables["params"], views)
  flops = flops_of(lowered)
  return flops / views.shape[0] if flops else None


class Matmul:
  """A jitted float32 ``size x size`` matmul on the default device; `call` times
  one product (``block_until_ready``); ``times`` collects what the caller keeps."""

  def __init__(self, size: int = MATMUL_SIZE):
    self.size = size
    # Drawn by NumPy: threefry sampling would compile for about a second per run.
    self.a = jnp.asarray(np.random.default_rng(0).standard_normal((size, size), np.float32))
    self.f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(self.f(self.a))
    self.times = []

  def call(self) -> float:
    start = time.perf_counter()
    jax.block_until_ready(self.f(self.a))
    return time.perf_counter() - start

  def rates(self) -> list:
    """GFLOP/s of each timed product."""
    return [2 * self.size ** 3 / seconds / 1e9 for seconds in self.times]


def measure_reference(matmul: Optional[Matmul] = None,
                      repeats: int = MATMUL_REPEATS) -> Optional[Matmul]:
  """On CPU: times ``repeats`` matmuls (a new `Matmul` unless one is given) and
  returns it; elsewhere None (the data-sheet peak is the reference)."""
  if jax.devices()[0].platform != "cpu":
    return None
  matmul = matmul or Matmul()
  for _ in range(repeats):
    matmul.times.append(matmul.call())
  return matmul


def summarise(examples_per_sec: Optional[float], views_per_example: int,
              flops_per_view: Optional[float], matmul: Optional[Matmul],
              devices: Sequence[Any], hosts: int = 1) -> dict[str, Any]:
  """The run's throughput record.

  Args:
    examples_per_sec: training examples per second after compilation.
    views_per_example: views of each example the model sees per step.
    flops_per_view: `model_flops_per_view`.
    matmul: the CPU reference (`measure_reference`), or None.
    devices: every device the step runs on (for the peak and its count).
    hosts: processes of the run; on CPU the reference is this host's matmul
      rate times ``hosts`` (hosts of one kind).

  Returns:
    ``model_flops_per_view``, ``model_gflops_per_sec``, and either (CPU)
    ``matmul_gflops_per_sec`` (median of the timed products),
    ``matmul_gflops_per_sec_range`` and ``of_matmul`` (the model rate over
    it), or (GPU/TPU) ``peak_flops_per_device`` and ``mfu``.
  """
  rate = (examples_per_sec * views_per_example * flops_per_view
          if examples_per_sec and flops_per_view else None)
  out = dict(examples_per_sec=examples_per_sec, views_per_example=views_per_example,
             model_flops_per_view=flops_per_view,
             model_gflops_per_sec=rate / 1e9 if rate else None)
  if matmul is not None and matmul.times:
    rates = matmul.rates()
    reference = statistics.median(rates)
    out.update(matmul_size=matmul.size, matmul_gflops_per_sec=reference,
               matmul_gflops_per_sec_range=[min(rates), max(rates)],
               hosts=hosts, of_matmul=rate / 1e9 / (reference * hosts) if rate else None)
  else:
    peak = peak_flops(devices[0])
    out.update(peak_flops_per_device=peak,
               mfu=rate / (peak * len(devices)) if rate and peak else None)
  return out


def describe(summary: dict[str, Any]) -> str:
  """One line for the console."""
  if not summary.get("model_gflops_per_sec"):
    return "throughput: not measured"
  line = (f"throughput: {summary['examples_per_sec']:.1f} examples/s, "
          f"{summary['model_gflops_per_sec']:.1f} GFLOP/s in the model (forward+backward)")
  if summary.get("of_matmul") is not None:
    low, high = summary["matmul_gflops_per_sec_range"]
    line += (f" = {100 * summary['of_matmul']:.1f}% of this CPU's float32 matmul "
             f"({summary['matmul_gflops_per_sec']:.1f} GFLOP/s, {low:.0f}-{high:.0f} "
             "in this run)")
  elif summary.get("mfu") is not None:
    line += f" = {100 * summary['mfu']:.1f}% MFU (dense bf16 peak)"
  return line
