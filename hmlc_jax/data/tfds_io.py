"""Reading tensorflow-datasets splits, with one-line errors: into host memory
(`read_splits`), or as random-access sources whose images are read when a
batch needs them (`stream_splits`, ``tfds.data_source`` over ArrayRecord files).

TensorFlow and tensorflow-datasets are imported only when a loader runs, and
TensorFlow is kept off the GPUs so that it leaves accelerator memory to JAX.
"""
from __future__ import annotations

import os
import socket
import sys
from typing import Optional

import ml_collections
import numpy as np

from hmlc_jax import distributed
from hmlc_jax.data.pipeline import LazyImages
from hmlc_jax.errors import UserInputError

LABEL_READ_ROWS = 4096     # rows per read when collecting a streamed split's labels


def default_data_dir() -> str:
  """Where tensorflow-datasets looks when no data_dir is given."""
  return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"),
                                                      "tensorflow_datasets"))


def quiet_tensorflow() -> None:
  """Keeps TensorFlow's start-up lines (oneDNN notice, absl pre-init warning) off
  stderr, so that an error stays one line; TensorFlow only reads data here, so
  its oneDNN kernels do not matter. Must run before TensorFlow is imported."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def import_tfds():
  """Imports tensorflow-datasets with TensorFlow hidden from every GPU."""
  quiet_tensorflow()
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:   # devices already initialised by an earlier TF user
    pass
  import tensorflow_datasets as tfds
  return tfds


def first_line(error: BaseException) -> str:
  """``Type: first line of the message`` of an exception, for one-line reports."""
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def get_data_hint(builder: str) -> str:
  """How to get ``builder``'s data onto an offline machine."""
  return (f"run `python -c \"import tensorflow_datasets as tfds; tfds.load('{builder}')\"` "
          f"on a machine with internet, copy the ~/tensorflow_datasets directory it fills "
          f"to this machine and set --config.dataset.data_dir to the copy")


def data_dir_of(config: ml_collections.ConfigDict) -> Optional[str]:
  """``config.data_dir`` with ``~`` expanded, or None (the tensorflow-datasets default)."""
  data_dir = config.data_dir or None
  return os.path.expanduser(data_dir) if data_dir else None


# tensorflow-datasets' own mirror, tried first for most data sets; when it
# cannot even be reached, a download would only retry for minutes.
PROBE_HOST = ("storage.googleapis.com", 443)
PROBE_TIMEOUT_S = 10.0


def can_reach_downloads() -> bool:
  """Whether a TCP connection to ``PROBE_HOST`` opens within ``PROBE_TIMEOUT_S``."""
  try:
    socket.create_connection(PROBE_HOST, timeout=PROBE_TIMEOUT_S).close()
    return True
  except OSError:
    return False


def _is_prepared(tfds, builder: str, data_dir: Optional[str]) -> bool:
  """Whether ``builder``'s data is prepared, without tfds' warnings about leftovers
  of an interrupted download."""
  from absl import logging as absl_logging
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    return tfds.builder(builder, data_dir=data_dir).is_prepared()
  finally:
    absl_logging.set_verbosity(verbosity)


def _read_without_download(tfds, builder: str, data_dir: Optional[str]):
  """The splits as `read_splits` returns them when they can be read as they are
  (``tfds.testing.mock_data`` serves unprepared data sets this way), else None."""
  from absl import logging as absl_logging
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)     # no warnings about missing metadata
  try:
    splits = tfds.load(builder, split=["train", "test"], data_dir=data_dir, download=False)
  except AssertionError:          # "could not find data"
    return None
  finally:
    absl_logging.set_verbosity(verbosity)
  # Example by example: whole-split batches (batch_size=-1) need split sizes that
  # a mock without metadata does not have.
  out = []
  for split in splits:
    rows = list(tfds.as_numpy(split))
    out.append({key: np.stack([row[key] for row in rows]) for key in rows[0]})
  return out


def _unreachable(display: str, where: str, hint: str) -> UserInputError:
  return UserInputError(f"{display} not found in {where} and this machine cannot reach "
                        f"the download servers ({PROBE_HOST[0]}); {hint}")


def _not_downloading(display: str, builder: str, where: str, hint: str) -> UserInputError:
  return UserInputError(f"{display} (tensorflow-datasets '{builder}') not found in "
                        f"{where} and dataset.download is False; {hint}")


def _surely_missing(builder: str, data_dir: Optional[str]) -> bool:
  """Whether ``builder``'s data is surely not there, decided without importing
  TensorFlow (about 10 s): no folder of it in the data directory, and
  tensorflow-datasets not imported yet (so no ``tfds.testing.mock_data`` can
  be serving it)."""
  where = data_dir or default_data_dir()
  return ("tensorflow_datasets" not in sys.modules
          and not os.path.isdir(os.path.join(where, builder)))


def _fail_fast_when_missing(builder: str, display: str, data_dir: Optional[str],
                            download: bool, hint: str) -> None:
  """The missing-data errors of `read_splits`, raised before TensorFlow is imported
  when the data is surely missing."""
  if not _surely_missing(builder, data_dir):
    return
  where = data_dir or default_data_dir()
  if not download:
    raise _not_downloading(display, builder, where, hint)
  if not can_reach_downloads():
    raise _unreachable(display, where, hint)


def _several_processes() -> bool:
  import jax
  return jax.process_count() > 1


def read_splits(builder: str, display: str, data_dir: Optional[str], download: bool,
                hint: Optional[str] = None) -> list:
  """``tfds.load`` of ``builder``'s train and test splits as NumPy feature dicts.

  Args:
    builder: tensorflow-datasets name, e.g. "cifar100".
    display: the data set's name in messages, e.g. "CIFAR-100".
    data_dir: tensorflow-datasets data directory, None for the default.
    download: let tensorflow-datasets download and prepare missing data (in a
      multi-process run process 0 alone, the others waiting for it).
    hint: how to get the data, for the error message (default: `get_data_hint`).

  Raises:
    UserInputError: the data is not in ``data_dir`` and was not (or could not
      be) downloaded; without network this comes within seconds, not after
      minutes of download retries.
  """
  hint = hint or get_data_hint(builder)
  _fail_fast_when_missing(builder, display, data_dir, download, hint)
  tfds = import_tfds()
  where = data_dir or default_data_dir()
  if download and not _is_prepared(tfds, builder, data_dir):
    readable = _read_without_download(tfds, builder, data_dir)
    if readable is not None:      # nothing to download (e.g. tfds.testing.mock_data)
      return readable
    if not can_reach_downloads():
      raise _unreachable(display, where, hint)
  try:
    if download and _several_processes():
      # One download into the shared data_dir: process 0's; the others wait.
      distributed.lead_first(f"preparing {display}", lambda: tfds.builder(
          builder, data_dir=data_dir).download_and_prepare())
      download = False
    splits = tfds.load(builder, split=["train", "test"], data_dir=data_dir,
                       batch_size=-1, download=download)
  except AssertionError as e:
    # download=False and no prepared data: tfds asserts "could not find data".
    if "could not find data" not in str(e):
      raise
    raise _not_downloading(display, builder, where, hint) from None
  except (OSError, tfds.download.DownloadError) as e:
    # Offline: requests' ConnectionError (an OSError) from inside the download.
    raise UserInputError(f"{display} not found in {where} and downloading it failed "
                         f"({first_line(e)}); {hint}") from None
  except ModuleNotFoundError as e:
    if not download:
      raise
    # tensorflow-datasets needs extra modules (e.g. importlib_resources) to download.
    raise UserInputError(f"{display} not found in {where} and tensorflow-datasets cannot "
                         f"download it without the Python module {e.name!r} (pip install "
                         f"{e.name}); or {hint}") from None
  return [tfds.as_numpy(split) for split in splits]


class SourceImages:
  """Reads the images of records ``indices`` of a random-access tfds source
  (the ``decode`` of a `pipeline.LazyImages` whose "files" are record indices)."""

  def __init__(self, source, key: str):
    self.source, self.key = source, key

  def __call__(self, indices, size: int, channels: int) -> np.ndarray:
    rows = self.source.__getitems__([int(i) for i in indices])
    images = np.stack([np.asarray(row[self.key], np.uint8) for row in rows])
    return images.reshape(len(rows), size, size, channels)


def stream_splits(builder: str, display: str, data_dir: Optional[str], download: bool,
                  image_key: str = "image", hint: Optional[str] = None) -> list:
  """The train and test splits of ``builder`` as ``tfds.data_source``s (ArrayRecord).

  Returns:
    per split, a dict of its features: ``image_key`` a `pipeline.LazyImages`
    over the record indices (images read when indexed; square images only),
    every other feature a NumPy array read once (the images left encoded).

  Raises:
    UserInputError: the data is not prepared in a random-access format (and
      was not, or could not be, downloaded and prepared as ArrayRecord).
  """
  tfds = import_tfds()
  where = data_dir or default_data_dir()
  prepare = (f"prepare it as ArrayRecord once: `python -c \"import tensorflow_datasets as "
             f"tfds; tfds.builder('{builder}', file_format='array_record')"
             f".download_and_prepare()\"` (or --config.dataset.stream=False)")
  try:
    try:
      sources, labels = _open_sources(tfds, builder, data_dir, image_key)
    except AssertionError:        # "could not find data": prepare it, if allowed
      if not download:
        raise
      if not can_reach_downloads():
        raise _unreachable(display, where, hint or get_data_hint(builder)) from None
      distributed.lead_first(f"preparing {display}", lambda: tfds.builder(
          builder, data_dir=data_dir, file_format="array_record").download_and_prepare())
      sources, labels = _open_sources(tfds, builder, data_dir, image_key)
  except AssertionError:
    raise UserInputError(f"{display} (tensorflow-datasets '{builder}') not found in {where}; "
                         f"{prepare}") from None
  except (NotImplementedError, ValueError) as e:   # prepared as TFRecord: no random access
    reason = first_line(e).split(" Possible root causes")[0]
    raise UserInputError(f"{display} in {where} cannot be streamed ({reason}); "
                         f"{prepare}") from None
  out = []
  for source, label_source in zip(sources, labels):
    count = len(source)
    shape = np.shape(source[0][image_key]) if count else (0, 0, 0)
    if len(shape) != 3 or shape[0] != shape[1]:
      raise UserInputError(f"{display}: streaming needs square images of a fixed size; "
                           f"'{image_key}' has shape {shape}")
    rows = [row for start in range(0, count, LABEL_READ_ROWS)
            for row in label_source.__getitems__(
                list(range(start, min(count, start + LABEL_READ_ROWS))))]
    split = {key: np.stack([np.asarray(row[key]) for row in rows])
             for key in rows[0] if key != image_key} if rows else {}
    split[image_key] = LazyImages(np.arange(count), shape[0], shape[2],
                                  SourceImages(source, image_key))
    out.append(split)
  return out


def _open_sources(tfds, builder, data_dir, image_key):
  """(sources, the same sources with ``image_key`` left encoded) of train and test."""
  kwargs = dict(split=["train", "test"], data_dir=data_dir, download=False)
  return (tfds.data_source(builder, **kwargs),
          tfds.data_source(builder, decoders={image_key: tfds.decode.SkipDecoding()},
                           **kwargs))
