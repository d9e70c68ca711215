"""Console progress and metric writers.

A tqdm bar shows steps, rate and ETA; metric lines print above it;
TensorBoard event files record the curves, written with the ``tensorboard``
package's protos and record framing alone. (clu's and flax's writers go
through TensorFlow, whose import cost 4-8 s of every run here, 2026-12-01.)
"""
from __future__ import annotations

import os
import socket
import sys
import time
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


class TensorBoardWriter:
  """Scalars as TensorBoard events in ``logdir/events.out.tfevents.*`` (a local
  folder), framed by the ``tensorboard`` package's record writer; its event-file
  writer would import TensorFlow for ``tf.io.gfile``."""

  def __init__(self, logdir: str):
    from tensorboard.summary.writer.record_writer import RecordWriter
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
    self._records = RecordWriter(open(os.path.join(logdir, name), "wb"))
    self._write(file_version="brain.Event:2")

  def _write(self, **fields) -> None:
    from tensorboard.compat.proto import event_pb2
    self._records.write(event_pb2.Event(wall_time=time.time(), **fields).SerializeToString())

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    from tensorboard.compat.proto import summary_pb2
    values = [summary_pb2.Summary.Value(tag=name, simple_value=float(value))
              for name, value in sorted(scalars.items())]
    self._write(step=int(step), summary=summary_pb2.Summary(value=values))
    self._records.flush()

  def flush(self) -> None:
    self._records.flush()

  def close(self) -> None:
    if not self._records.closed:
      self._records.close()


class Writers:
  """Sends scalars to several writers (console, TensorBoard)."""

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
    writers.append(TensorBoardWriter(logdir))
  return Writers(writers)


def progress_bar(total: int, initial: int, enabled: bool) -> tqdm.tqdm:
  """Training-step bar on stderr: steps done, steps/s, elapsed and ETA (redrawn at
  most every 0.5 s on a terminal, every 30 s into a log file)."""
  interactive = sys.stderr.isatty()
  return tqdm.tqdm(total=total, initial=initial, unit="step", disable=not enabled,
                   dynamic_ncols=True, file=sys.stderr, smoothing=0.1,
                   mininterval=0.5 if interactive else 30.0)
