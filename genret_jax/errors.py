"""Error types. Every user-facing failure is one line naming where it happened."""

from __future__ import annotations


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
    self.message = message
    where = self.path if line is None else f"{self.path}:{line}"
    if field is not None:
      where = f"{where}: {field}"
    super().__init__(f"{where}: {message}")


class ConfigError(GenRetError):
  """Bad configuration. Names the config key."""

  def __init__(self, key: str, message: str):
    self.key = key
    super().__init__(f"config.{key}: {message}")
