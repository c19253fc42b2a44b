"""Errors that mean "the user asked for something that cannot work".

`./run.sh` prints their message as one sentence and exits with status 2,
without a traceback. Everything else is a bug and keeps its traceback.

A write that fails because the disk is full or the folder is not writable
(ENOSPC, EDQUOT, EROFS, EACCES, EPERM) is the user's to fix, not a bug:
`storage_error` turns it into a UserError naming the path, the OS error,
what was kept and what to do. It recognises an OSError by its errno and a
TensorFlow error (tf.io.gfile, checkpoint ops, which carry no errno) by the
C library's message for that errno, e.g. "No space left on device".

This module imports nothing from sagan_tf (nor TensorFlow): any module may use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Iterator, Optional


class UserError(ValueError):
  """Bad input: the message says what was wrong (with the value or file) and what to do."""


STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)

_ADVICE = {
    errno.ENOSPC: "free space on that disk (or use a folder on a larger one)",
    errno.EDQUOT: "free space within your disk quota (or have it raised)",
    errno.EROFS: "the file system is read-only: remount it read-write or use a folder "
                 "on a writable disk",
    errno.EACCES: "this user may not write there: fix the folder's permissions or use "
                  "another folder",
    errno.EPERM: "this user may not write there: fix the folder's permissions or use "
                 "another folder",
}


def storage_errno(error: BaseException) -> Optional[int]:
  """The errno (one of STORAGE_ERRNOS) of a failed write, or None for any other error."""
  if isinstance(error, UserError):
    return None
  if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
    return error.errno
  text = str(error)
  for code in STORAGE_ERRNOS:
    if os.strerror(code) in text:
      return code
  return None


def describe_errno(code: int) -> str:
  """"ENOSPC (No space left on device)"."""
  return f"{errno.errorcode.get(code, str(code))} ({os.strerror(code)})"


def storage_advice(code: int) -> str:
  """What to do about a STORAGE_ERRNOS error, e.g. "free space on that disk ..."."""
  return _ADVICE[code]


def storage_error(error: BaseException, path: str, kept: str,
                  then: str = "re-run the same command") -> Optional[UserError]:
  """UserError for a write to `path` that failed on a full or unwritable disk.

  Args:
    error: the exception the write raised.
    path: the file or folder being written (named in the message).
    kept: what is intact, e.g. "the checkpoints written before are intact".
    then: what to do once the disk is fixed.
  Returns:
    None when `error` is not such a failure (the caller re-raises it).
  """
  code = storage_errno(error)
  if code is None:
    return None
  return UserError(f"Cannot write {path}: {describe_errno(code)}. Nothing was lost: "
                   f"{kept}. To go on, {storage_advice(code)}, then {then}.")


@contextlib.contextmanager
def storage_errors(path: str, kept, then: str = "re-run the same command",
                   cleanup=None) -> Iterator[None]:
  """Turns a full / unwritable disk inside the block into storage_error(...).

  kept: the text, or a function returning it when the error happens.
  cleanup: called (its own errors ignored) before the UserError is raised,
  e.g. to remove a partial temporary file.
  """
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except  (re-raised unless a disk error)
    if storage_errno(e) is None:
      raise
    if cleanup is not None:
      try:
        cleanup()
      except Exception:  # pylint: disable=broad-except
        pass
    raise storage_error(e, path, kept() if callable(kept) else kept, then) from None
