"""Small files written whole or not at all (local paths and gs://).

  write_text(path, text)     text file (UTF-8)
  write_json(path, value)    JSON (indent 2, sorted keys, trailing newline)

The content goes to a temporary name beside `path` first (a hidden
`.NAME.tmp-PID-RANDOM`), which is then renamed over `path`. A reader
therefore sees either the old file or the new one, never a part: a kill,
a full disk or an exception during the write leaves the old content (and at
worst a hidden temporary file). Local files are flushed to disk (fsync)
before the rename, so this also holds across a power cut; elsewhere
(gs://, any other tf.io.gfile scheme) the rename is the file system's
(on GCS a new object appears whole).

This module imports nothing from sagan_tf: any module may use it.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

_SCHEME = "://"


def _is_local(path: str) -> bool:
  return _SCHEME not in path


def _temp_name(path: str) -> str:
  head, name = os.path.split(path)
  return os.path.join(head, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _write_local(path: str, data: bytes) -> None:
  tmp = _temp_name(path)
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic on POSIX and Windows
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  try:  # make the rename itself durable
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
  except OSError:
    return  # (Windows cannot open folders; the rename is done anyway)
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def _write_gfile(path: str, data: bytes) -> None:
  import tensorflow as tf  # only here: local writes need no TensorFlow
  tmp = _temp_name(path)
  try:
    with tf.io.gfile.GFile(tmp, "wb") as f:
      f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)
  except BaseException:
    try:
      if tf.io.gfile.exists(tmp):
        tf.io.gfile.remove(tmp)
    except tf.errors.OpError:
      pass
    raise


def write_bytes(path: str, data: bytes) -> str:
  """Replaces `path` by `data` atomically (the folder must exist); returns path."""
  (_write_local if _is_local(path) else _write_gfile)(path, bytes(data))
  return path


def write_text(path: str, text: str) -> str:
  """Replaces `path` by `text` (UTF-8) atomically; returns path."""
  return write_bytes(path, text.encode("utf-8"))


def write_json(path: str, value: Any, *, indent: int = 2, sort_keys: bool = True) -> str:
  """Replaces `path` by `value` as JSON atomically; returns path.

  The value is serialised before anything is written, so a value JSON cannot
  hold raises TypeError / ValueError and leaves the old file untouched.
  """
  text = json.dumps(value, indent=indent, sort_keys=sort_keys) + "\n"
  return write_text(path, text)
