"""The training input pipeline: which examples make batch ``s``, and the stream of
batches the training loop consumes.

Batch ``s`` is a pure function of ``(seed, s)`` (`batch_indices`), and each
process builds only its share of it (`device_batch`), so one device, several
devices and several hosts train on the same examples, and a run resumed at
step ``s`` continues exactly. `train_batches` yields them from step ``s`` on:

* in memory (default): each batch gathered from the data set's arrays when
  the loop asks for it;
* streamed (``dataset.stream=True``): a grain pipeline (``MapDataset`` over
  the steps, read by ``dataset.stream_threads`` threads, ``dataset.prefetch``
  batches ahead) whose elements are the same batches. With a folder data set
  the images are decoded and resized in those threads (`LazyImages`), so only
  file names and labels are held in memory. The pipeline's position is the
  step, which the orbax checkpoint holds: a resumed run rebuilds it there.
"""
from __future__ import annotations

from typing import Dict, Iterator, Sequence

import jax
import ml_collections
import numpy as np


def batch_indices(seed: int, step: int, num_examples: int, batch_size: int) -> np.ndarray:
  """Training-set indices of global batch ``step`` (a pure function of its arguments).

  The data are read as a stream of epochs, each a fresh permutation seeded by
  ``(seed, epoch)``; batch ``step`` is stream positions
  ``[step * batch_size, (step + 1) * batch_size)``.
  """
  positions = step * batch_size + np.arange(batch_size)
  epochs, within = np.divmod(positions, num_examples)
  out = np.empty(batch_size, np.int64)
  for epoch in np.unique(epochs):
    order = np.random.default_rng([seed, int(epoch)]).permutation(num_examples)
    sel = epochs == epoch
    out[sel] = order[within[sel]]
  return out


class StepBatch:
  """This process's share of global batch ``step`` (picklable, no JAX inside).

  Process ``p`` of ``P`` takes global batch positions ``[p * B / P, (p + 1) * B / P)``.
  Called with a step it returns ``x`` ``[devices, b, ...]`` raw inputs, ``y``
  int32 ``[devices, b, H]``, ``position`` int32 ``[devices, b]`` (place in the
  global batch) and ``seed`` int32 ``[devices]`` (passed as data: runs that
  differ only in their seed compile the same program).
  """

  def __init__(self, train_x, train_y, seed: int, batch_size: int, process_index: int,
               process_count: int, local_devices: int):
    self.train_x, self.train_y, self.seed, self.batch_size = train_x, train_y, seed, batch_size
    share = batch_size // process_count
    self.position = process_index * share + np.arange(share, dtype=np.int32)
    self.devices = local_devices

  def __call__(self, step: int) -> Dict[str, np.ndarray]:
    idx = batch_indices(self.seed, int(step), len(self.train_x), self.batch_size)[self.position]
    split = lambda a: np.asarray(a).reshape((self.devices, -1) + a.shape[1:])
    return {"x": split(self.train_x[idx]), "y": split(self.train_y[idx]),
            "position": split(self.position),
            "seed": np.full(self.devices, self.seed, np.int32)}


def step_batch(data, config: ml_collections.ConfigDict) -> StepBatch:
  """`StepBatch` of ``data`` for this process and its local devices."""
  return StepBatch(data.train_x, data.train_y, config.seed, config.batch_size,
                   jax.process_index(), jax.process_count(), jax.local_device_count())


def device_batch(data, config: ml_collections.ConfigDict, step: int) -> Dict[str, np.ndarray]:
  """This process's share of global batch ``step`` (`StepBatch`)."""
  return step_batch(data, config)(step)


def train_batches(data, config: ml_collections.ConfigDict, start: int,
                  stop: int) -> Iterator[Dict[str, np.ndarray]]:
  """The batches of steps ``start .. stop - 1``, in order (see the module docstring)."""
  make = step_batch(data, config)
  if not config.dataset.get("stream", False):
    return (make(step) for step in range(start, stop))
  import grain   # pylint: disable=import-outside-toplevel  (only streamed runs need it)
  steps = grain.MapDataset.range(start, stop).map(make)
  options = grain.ReadOptions(num_threads=max(1, config.dataset.get("stream_threads", 2)),
                              prefetch_buffer_size=max(1, config.dataset.get("prefetch", 2)))
  return iter(steps.to_iter_dataset(options))


class LazyImages:
  """Image files read on access, indexed like a uint8 array ``[N, S, S, C]``.

  An integer, a slice or an index array decodes those images (resized to
  ``S x S``, converted to ``C`` channels); `subset` makes a view without
  decoding. Holds only the file names.
  """

  def __init__(self, files: Sequence[str], size: int, channels: int, decode):
    self.files = np.asarray(files, dtype=object)
    self.size, self.channels, self.decode = size, channels, decode
    self.dtype = np.dtype(np.uint8)
    self.ndim = 4

  @property
  def shape(self):
    return (len(self.files), self.size, self.size, self.channels)

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index) -> np.ndarray:
    if isinstance(index, (int, np.integer)):
      return self.decode([self.files[index]], self.size, self.channels)[0]
    return self.decode(list(self.files[index]), self.size, self.channels)

  def subset(self, index) -> "LazyImages":
    return LazyImages(self.files[index], self.size, self.channels, self.decode)


def take(x, index):
  """``x[index]``, as a view where ``x`` is `LazyImages` (nothing decoded)."""
  return x.subset(index) if isinstance(x, LazyImages) else x[index]
