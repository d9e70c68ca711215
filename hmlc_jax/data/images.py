"""Image files to uint8 arrays: the decoder of folder data sets, in memory and streamed.

OpenCV decodes (PNG, JPEG, BMP, GIF, TIFF, WebP, PPM/PGM), without holding
Python's lock, at about a third of PIL's cost per small image, so a streamed
run's decoding threads leave the cores to the training step. Every image is
converted to ``channels`` (1: grey, 3: RGB; an alpha channel is dropped) and
resized to ``size x size`` (area averaging when it shrinks, bilinear when it
grows; untouched when it already has that size). A file that does not
decode, including a JPEG cut short (no end-of-image marker), is a
`UserInputError` naming it.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from hmlc_jax.errors import UserInputError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_JPEG = (".jpg", ".jpeg")
_JPEG_END = b"\xff\xd9"


def _cv2():
  import cv2   # pylint: disable=import-outside-toplevel  (the training extra's dependency)
  cv2.setNumThreads(1)           # the decoding threads are the parallelism
  logging = getattr(getattr(cv2, "utils", None), "logging", None)
  if logging is not None:        # a failed read is reported by us, in one line
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
  return cv2


def is_image(name: str) -> bool:
  """Whether a file name is a visible image file, by its suffix."""
  return not name.startswith(".") and os.path.splitext(name)[1].lower() in SUFFIXES


def decode(files: Sequence[str], size: int, channels: int) -> np.ndarray:
  """Reads image files into uint8 ``[len(files), size, size, channels]``.

  Raises:
    UserInputError: a file that cannot be read or decoded, with its path.
  """
  cv2 = _cv2()
  flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
  out = np.empty((len(files), size, size, channels), np.uint8)
  for i, file in enumerate(files):
    if _truncated_jpeg(file):    # before libjpeg, which would warn on stderr and fill grey
      raise UserInputError(f"cannot read image {file}: cut short")
    pixels = cv2.imread(file, flag)
    if pixels is None:
      raise UserInputError(f"cannot read image {file}: not a decodable image")
    if pixels.shape[:2] != (size, size):
      grows = pixels.shape[0] < size or pixels.shape[1] < size
      pixels = cv2.resize(pixels, (size, size),
                          interpolation=cv2.INTER_LINEAR if grows else cv2.INTER_AREA)
    if channels == 3:
      pixels = pixels[..., ::-1]              # OpenCV's BGR to RGB
    out[i] = pixels.reshape(size, size, channels)
  return out


def _truncated_jpeg(file: str) -> bool:
  """A JPEG without its end-of-image marker (OpenCV decodes those with grey fill)."""
  if os.path.splitext(file)[1].lower() not in _JPEG:
    return False
  with open(file, "rb") as f:
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - 64))
    tail = f.read().rstrip(b"\x00\r\n ")
  return not tail.endswith(_JPEG_END)
