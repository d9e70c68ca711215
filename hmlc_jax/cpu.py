"""Splitting a CPU host into several XLA devices; import before jax.

On a CPU-only machine one XLA device can leave cores idle in the small-CNN
training step. Pmapping over several host devices runs their programs side by
side; with the small CNN's matmul-shaped pools and kernel gradients
(``hmlc_jax.models``) one device per core is the fastest split
(docs/benchmarks.md). These helpers only edit ``XLA_FLAGS`` and must run
before jax is first imported; this module imports no jax.
"""
from __future__ import annotations

import os

DEVICES_PER_CORE = 1
MAX_DEVICES = 8


def cpu_devices_for(batch_size: int, cores: int | None = None) -> int:
  """``DEVICES_PER_CORE`` per core, at most ``MAX_DEVICES``, reduced until it
  divides the global batch. ``cores`` defaults to ``os.cpu_count()``."""
  cores = cores or os.cpu_count() or 1
  n = max(1, min(cores * DEVICES_PER_CORE, MAX_DEVICES))
  while batch_size % n:
    n -= 1
  return n


def split_cpu(count: int) -> None:
  """Asks XLA for ``count`` host devices. A device count already in XLA_FLAGS
  (set by the user) wins. Ignored by XLA on GPU/TPU."""
  current = os.environ.get("XLA_FLAGS", "")
  if "xla_force_host_platform_device_count" not in current:
    os.environ["XLA_FLAGS"] = f"{current} --xla_force_host_platform_device_count={count}".strip()


def cpu_model() -> str:
  """The processor's name (``/proc/cpuinfo``), else the platform's, for benchmark records."""
  import platform   # pylint: disable=import-outside-toplevel
  try:
    with open("/proc/cpuinfo") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    return platform.processor() or platform.machine()
