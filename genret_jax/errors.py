"""Error types. Every user-facing failure is one line naming where it happened.

`quote` is how an error line shows a bad value (cut to about 80 characters),
and `os_error` turns a filesystem failure (permission, symlink loop, a file
where a folder belongs, ...) into a one-line DataError naming the path.
"""

from __future__ import annotations

import errno
import os

# Longest message an error line carries; longer ones (e.g. listing a huge header)
# are cut in the middle.
MAX_MESSAGE_CHARS = 400

_OS_REASONS = {
    errno.ENOENT: "missing",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ELOOP: "symbolic link loop (too many levels of symbolic links)",
    errno.ENOTDIR: "not a folder (it, or a folder above it, is a file)",
    errno.EISDIR: "is a folder, not a file",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "read-only file system",
    errno.EEXIST: "already exists",
    errno.EIO: "input/output error",
}


def quote(value: object, limit: int = 80) -> str:
  """repr of a bad value for an error line, at most about `limit` characters."""
  if isinstance(value, str) and len(value) > limit:
    return f"{value[:limit]!r}... ({len(value):,} characters)"
  text = repr(value)
  if len(text) > limit:
    return f"{text[:limit]}... ({len(text):,} characters)"
  return text


def _bounded(message: str) -> str:
  message = " ".join(str(message).splitlines())
  if len(message) <= MAX_MESSAGE_CHARS:
    return message
  half = MAX_MESSAGE_CHARS // 2
  return f"{message[:half]} ... {message[-half:]}"


class GenRetError(Exception):
  """Base class for errors that `genret_jax.main` reports as one line + exit 1."""


class DataError(GenRetError):
  """Bad input data. Formats as `file:line: field: message`.

  Attributes:
    path: the file the problem is in.
    line: 1-based line number in that file, or None when not line-specific.
    field: the column / JSON key / attribute name, or None.
  """

  def __init__(self, path: str, message: str, *, line: int | None = None,
               field: str | None = None):
    self.path = str(path)
    self.line = line
    self.field = field
    self.message = _bounded(message)
    where = self.path if line is None else f"{self.path}:{line}"
    if field is not None:
      where = f"{where}: {field}"
    super().__init__(f"{where}: {self.message}")


class ConfigError(GenRetError):
  """Bad configuration. Names the config key."""

  def __init__(self, key: str, message: str):
    self.key = key
    super().__init__(f"config.{key}: {_bounded(message)}")


def brief(e: BaseException, limit: int = 120) -> str:
  """An exception's text on one line, cut to `limit` characters."""
  text = " ".join(str(e).split()) or type(e).__name__
  return text if len(text) <= limit else text[:limit] + "..."


def os_reason(e: OSError) -> str:
  """A short reason for a filesystem error ('permission denied', 'symbolic link loop', ...)."""
  if e.errno in _OS_REASONS:
    return _OS_REASONS[e.errno]
  return (e.strerror or type(e).__name__).lower()


def os_error(e: OSError, path: str | os.PathLike | None = None, doing: str = "") -> DataError:
  """One-line DataError for a filesystem failure: `path: reason (doing)`."""
  where = path if path is not None else (e.filename or "?")
  reason = os_reason(e)
  return DataError(str(where), f"{reason} ({doing})" if doing else reason)
