"""Features of a frozen encoder: computed batch by batch, held in memory or in a file.

The evaluation reads the training split's features in blocks of rows and
gathers rows by index; it never needs them all at once. `ArrayTable` holds
them in host memory (the data sets that fit there); `FileTable` keeps them in
a raw float32 file (streamed data sets, whose training features may not fit)
and reads it with ``pread``, never mapping it, so that reading grows the page
cache and not the process's resident set.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import jax
import numpy as np

from hmlc_jax.data import augment

BLOCK_BYTES = 4 << 20       # rows read (or gathered) at a time: this many bytes of features


def feature_batches(model, variables, inputs, kind: str, batch_size: int,
                    keep: Sequence[str]) -> Iterator[Dict[str, np.ndarray]]:
  """Eval-mode outputs named in ``keep`` (``representation`` ``[n, R]``,
  ``embedding`` ``[n, D]``, float32 on the host) of ``inputs``, one batch at a
  time, in order. ``inputs`` is indexed by slices (a streamed data set's
  images are decoded per batch). Batches are padded to ``batch_size`` so the
  jitted function compiles once.
  """
  @jax.jit
  def apply(x):
    out = model.apply(variables, augment.prepare_eval(x, kind), train=False)
    return {name: out[name] for name in keep}

  for start in range(0, len(inputs), batch_size):
    chunk = inputs[start:start + batch_size]
    pad = batch_size - len(chunk)
    padded = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)]) if pad else chunk
    yield {name: value[:len(chunk)] for name, value in jax.device_get(apply(padded)).items()}


def block_rows(dim: int) -> int:
  """Rows of ``dim`` float32 features in `BLOCK_BYTES` (at least one)."""
  return max(1, BLOCK_BYTES // (4 * dim))


class ArrayTable:
  """Feature rows ``[N, R]`` held in memory (float32 from the encoder)."""

  def __init__(self, rows: np.ndarray):
    self.array = np.asarray(rows)
    self.dim = self.array.shape[1]

  def __len__(self) -> int:
    return len(self.array)

  def block(self, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)``."""
    return self.array[start:stop]

  def take(self, rows: np.ndarray) -> np.ndarray:
    """Rows by index, ``rows.shape + (R,)`` (any order, repeats allowed)."""
    return self.array[rows]

  def close(self) -> None:
    """Nothing to release (the file table deletes its file)."""


class FileTable:
  """float32 feature rows ``[N, R]`` in a raw file, appended block by block."""

  def __init__(self, path: str, dim: int):
    self.path, self.dim = path, dim
    self._row_bytes = 4 * dim
    self._rows = 0
    self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)

  def __len__(self) -> int:
    return self._rows

  def append(self, rows: np.ndarray) -> None:
    rows = np.ascontiguousarray(rows, np.float32)
    if rows.ndim != 2 or rows.shape[1] != self.dim:
      raise ValueError(f"rows of shape {rows.shape} appended to a table of width {self.dim}")
    os.pwrite(self._fd, rows.tobytes(), self._rows * self._row_bytes)
    self._rows += len(rows)

  def block(self, start: int, stop: int) -> np.ndarray:
    stop = min(stop, self._rows)
    raw = os.pread(self._fd, (stop - start) * self._row_bytes, start * self._row_bytes)
    return np.frombuffer(raw, np.float32).reshape(stop - start, self.dim)

  def take(self, rows: np.ndarray) -> np.ndarray:
    size, fd = self._row_bytes, self._fd
    raw = b"".join([os.pread(fd, size, int(i) * size) for i in np.asarray(rows).ravel()])
    return np.frombuffer(raw, np.float32).reshape(np.shape(rows) + (self.dim,))

  def close(self) -> None:
    """Closes and deletes the file."""
    if self._fd >= 0:
      os.close(self._fd)
      self._fd = -1
      os.unlink(self.path)


def blocks(table, rows: Optional[int] = None) -> Iterator[Tuple[int, np.ndarray]]:
  """``(start, rows [n, R])`` over the whole table, `block_rows` at a time."""
  rows = rows or block_rows(table.dim)
  for start in range(0, len(table), rows):
    yield start, table.block(start, start + rows)


def moments(table, transform: Callable[[np.ndarray], np.ndarray] = lambda rows: rows
            ) -> Tuple[np.ndarray, np.ndarray]:
  """Per-feature mean and variance (float64 ``[R]``) of ``transform(rows)``: each
  block's mean and sum of squared deviations merged into the running ones in
  float64 (Chan et al.'s pairwise update), one pass over the table."""
  count, mean, m2 = 0, np.zeros(table.dim), np.zeros(table.dim)
  for _, rows in blocks(table):
    rows = np.asarray(transform(rows), np.float64)
    n, block_mean = len(rows), rows.mean(axis=0)
    delta = block_mean - mean
    m2 += np.square(rows - block_mean).sum(axis=0) + np.square(delta) * count * n / (count + n)
    mean += delta * n / (count + n)
    count += n
  return mean, m2 / count


def mean_std(table) -> Tuple[np.ndarray, np.ndarray]:
  """Per-feature mean and standard deviation (+1e-6), float32 ``[R]`` each (`moments`)."""
  mean, var = moments(table)
  return mean.astype(np.float32), (np.sqrt(var) + 1e-6).astype(np.float32)


def tables_of(model, variables, inputs, kind: str, batch_size: int, keep: Sequence[str],
              directory: Optional[str] = None, prefix: str = "") -> Dict[str, object]:
  """The ``keep`` features of ``inputs`` (`feature_batches`), one table each:
  `FileTable` files ``directory/PREFIXNAME.f32`` written batch by batch (never
  all in memory), or `ArrayTable` when ``directory`` is None."""
  if directory is None:
    parts = {name: [] for name in keep}
    for batch in feature_batches(model, variables, inputs, kind, batch_size, keep):
      for name in keep:
        parts[name].append(batch[name])
    return {name: ArrayTable(np.concatenate(values)) for name, values in parts.items()}
  tables = {}
  for batch in feature_batches(model, variables, inputs, kind, batch_size, keep):
    for name in keep:
      if name not in tables:
        tables[name] = FileTable(os.path.join(directory, f"{prefix}{name}.f32"),
                                 batch[name].shape[1])
      tables[name].append(batch[name])
  if len(tables) != len(keep):
    raise ValueError("no rows to extract features from")
  return tables
