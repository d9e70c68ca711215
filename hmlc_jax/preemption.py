"""Stopping cleanly on SIGTERM / SIGINT (preemption, Ctrl-C).

Inside `StopSignals` the two signals only set a flag; the training loop
checks it after every step, saves a checkpoint at that step and returns, so
the next run of the same command resumes exactly there. A second signal
while stopping does the default thing (terminate), for a user who insists.
"""
from __future__ import annotations

import signal
import threading
from typing import Optional

import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
  """Context manager recording the first SIGTERM/SIGINT in ``received`` (its name)."""

  def __init__(self):
    self.received: Optional[str] = None
    self._previous = {}

  def __enter__(self) -> "StopSignals":
    if threading.current_thread() is threading.main_thread():   # signal() requires it
      for sig in SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    self.received = signal.Signals(signum).name
    for sig in SIGNALS:                     # the next one is not caught
      signal.signal(sig, self._previous.get(sig, signal.SIG_DFL))

  def poll(self, step: int, every: int) -> Optional[str]:
    """The signal to stop on after ``step``, if any.

    One process checks every step. Several processes agree through a
    collective, so only every ``every`` steps, keeping it off the step's path.
    """
    import jax
    if jax.process_count() == 1:
      return self.received
    return self.any_process() if step % every == 0 else None

  def any_process(self) -> Optional[str]:
    """The signal if this or any other process of a multi-process run received one.

    Every process must call this at the same steps, so all of them stop at the same step.
    """
    import jax
    if jax.process_count() == 1:
      return self.received
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(np.int32(self.received is not None))
    return (self.received or "SIGTERM") if np.any(flags) else None
