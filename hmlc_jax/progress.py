"""Console progress and metric writers.

A tqdm bar shows steps, rate and ETA; metric lines print above it; clu's
TensorBoard writer records the curves. clu's writers import TensorFlow (about
5 s), so that happens only when TensorBoard output is asked for.
"""
from __future__ import annotations

import sys
from typing import Any, Mapping, Sequence

import tqdm


class ConsoleWriter:
  """Prints scalars as one line on stderr, above the progress bar."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    values = " ".join(f"{name}={float(value):.4g}" for name, value in sorted(scalars.items()))
    tqdm.tqdm.write(f"step {step}: {values}", file=sys.stderr)

  def flush(self) -> None:
    sys.stderr.flush()

  def close(self) -> None:
    self.flush()


class Writers:
  """Sends scalars to several writers (console, clu's TensorBoard SummaryWriter)."""

  def __init__(self, writers: Sequence[Any]):
    self.writers = list(writers)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    for writer in self.writers:
      writer.write_scalars(step, scalars)

  def flush(self) -> None:
    for writer in self.writers:
      writer.flush()

  def close(self) -> None:
    for writer in self.writers:
      writer.close()


def create_writer(logdir: str | None, console: bool) -> Writers:
  """TensorBoard event files under ``logdir`` (when given) plus console lines."""
  writers = [ConsoleWriter()] if console else []
  if logdir is not None:
    from clu import metric_writers   # pylint: disable=g-import-not-at-top
    writers.append(metric_writers.SummaryWriter(logdir))
  return Writers(writers)


def progress_bar(total: int, initial: int, enabled: bool) -> tqdm.tqdm:
  """Training-step bar on stderr: steps done, steps/s, elapsed and ETA (redrawn at
  most every 0.5 s on a terminal, every 30 s into a log file)."""
  interactive = sys.stderr.isatty()
  return tqdm.tqdm(total=total, initial=initial, unit="step", disable=not enabled,
                   dynamic_ncols=True, file=sys.stderr, smoothing=0.1,
                   mininterval=0.5 if interactive else 30.0)
