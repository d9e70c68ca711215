"""The default XLA CPU device count (hmlc_jax.cpu)."""
import pytest

from hmlc_jax import cpu


@pytest.mark.parametrize("cores, batch, expected", [
    (1, 256, 1), (2, 256, 2), (16, 256, 8),     # one per core, at most 8
    (6, 12, 6), (8, 7, 7), (8, 9, 3), (2, 1, 1),  # the largest count that divides the batch
])
def test_cpu_devices_for_takes_one_per_core_dividing_the_batch(cores, batch, expected):
  assert cpu.cpu_devices_for(batch, cores=cores) == expected


def test_split_cpu_keeps_a_device_count_the_user_set(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
  cpu.split_cpu(8)
  assert cpu.os.environ["XLA_FLAGS"] == (
      "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=8")
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=3")
  cpu.split_cpu(8)
  assert cpu.os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=3"
