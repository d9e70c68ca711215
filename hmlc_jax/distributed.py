"""Multi-process (multi-host) start-up: one process per host, `jax.distributed`.

Every process runs the same command; each loads the data set, builds its
share of every global batch (`pipeline.device_batch`) and trains its local
devices; `pmap` collectives span all processes' devices. Process 0 writes
the logs, config and results; orbax writes checkpoints cooperatively.

Where the arguments come from, first found wins: ``--coordinator_address``,
``--num_processes``, ``--process_id`` flags; the environment variables
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``; or,
with ``--multihost`` alone, JAX's own detection (Cloud TPU pod slices,
Slurm, Open MPI).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Optional

from hmlc_jax.errors import UserInputError

ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}


def settings(coordinator_address: Optional[str], num_processes: Optional[int],
             process_id: Optional[int]) -> dict:
  """The three arguments from flags (not None) or the environment; ints checked."""
  given = dict(coordinator_address=coordinator_address, num_processes=num_processes,
               process_id=process_id)
  out = {}
  for name, value in given.items():
    if value is None and os.environ.get(ENV[name]):
      value = os.environ[ENV[name]]
      if name != "coordinator_address":
        try:
          value = int(value)
        except ValueError:
          raise UserInputError(f"{ENV[name]} must be an integer, got {value!r}") from None
    out[name] = value
  if out["num_processes"] is not None and out["num_processes"] < 1:
    raise UserInputError(f"--num_processes must be at least 1, got {out['num_processes']}")
  if out["process_id"] is not None and out["num_processes"] is not None and not (
      0 <= out["process_id"] < out["num_processes"]):
    raise UserInputError(f"--process_id must lie in [0, {out['num_processes']}), "
                         f"got {out['process_id']}")
  if out["coordinator_address"] and ":" not in out["coordinator_address"]:
    raise UserInputError(f"--coordinator_address must be HOST:PORT, "
                         f"got {out['coordinator_address']!r}")
  return out


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, auto: bool = False) -> bool:
  """Calls `jax.distributed.initialize` when a multi-process run is asked for.

  Returns:
    whether it did. A single process (nothing given, or ``num_processes=1``) is
    left alone.
  """
  args = settings(coordinator_address, num_processes, process_id)
  explicit = any(v is not None for v in args.values())
  if not explicit and not auto:
    return False
  if args["num_processes"] == 1:
    return False
  if explicit and None in args.values():
    missing = [f"--{k}" for k, v in args.items() if v is None]
    raise UserInputError(f"a multi-process run needs {', '.join(missing)} too "
                         f"(or their JAX_* environment variables)")
  import jax
  # CPU devices of different processes talk through gloo (GPU/TPU ignore this).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**{k: v for k, v in args.items() if v is not None})
  return True


def is_lead() -> bool:
  """Whether this is process 0, the one that writes logs and results."""
  import jax
  return jax.process_index() == 0


def sync(name: str) -> None:
  """Waits for every process of a multi-process run (no-op for one process)."""
  import jax
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def lead_first(name: str, work: Callable[[], Any]) -> None:
  """Runs ``work`` on process 0 alone while the other processes wait for it.

  For what must happen once on a shared file system: downloading a data set,
  moving a damaged checkpoint aside. Raises on every process when ``work``
  failed: process 0 its own error, the others one line naming ``name``.
  """
  import jax
  if jax.process_count() == 1:
    work()
    return
  error = None
  if is_lead():
    try:
      work()
    except Exception as e:  # pylint: disable=broad-except  (re-raised below)
      error = e
  succeeded = _lead_says(error is None)
  if error is not None:
    raise error
  if not succeeded:
    raise UserInputError(f"{name} failed on process 0 (its error says why)")


def _lead_says(flag: bool) -> bool:
  """Process 0's ``flag`` on every process (a barrier too)."""
  import numpy as np
  from jax.experimental import multihost_utils
  return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))
