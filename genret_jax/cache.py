"""Verified on-disk state of the main job: what a cached step recorded is what is reused.

Every step that writes files (prepared data, identifiers, checkpoints) records
each file's size and sha256 when it finishes; before reusing the output, the
files are compared with that record (`check_files`) and a mismatch (a file
truncated, changed or missing) makes the step redo its work or stop with one
line naming the file. Temporary folders of a killed run (`.prepared.tmp-*`,
`ids/<scheme>.tmp-*`) are removed at the next run (`remove_stale`). Nothing
here imports TensorFlow or JAX.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import stat
import sys

from genret_jax.errors import DataError, os_error

# (path, size, mtime_ns) -> sha256: a file is hashed once per process while unchanged.
_SHA256: dict[tuple[str, int, int], str] = {}


def warn(message: str) -> None:
  """One `warning:` line on stderr (kept when stdout goes to a log file)."""
  print(f"warning: {message}", file=sys.stderr, flush=True)


def sha256(path: str) -> str:
  """sha256 hex of a file (cached while its size and mtime are unchanged)."""
  st = os.stat(path)
  key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
  if key not in _SHA256:
    h = hashlib.sha256()
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    _SHA256[key] = h.hexdigest()
  return _SHA256[key]


def record_files(folder: str, names: list[str] | None = None) -> dict[str, list]:
  """{relative path: [size, sha256]} of `names` (default: every file under `folder`)."""
  if names is None:
    names = sorted(os.path.relpath(os.path.join(root, f), folder)
                   for root, _, files in os.walk(folder) for f in files)
  out = {}
  for name in names:
    path = os.path.join(folder, name)
    out[name] = [os.path.getsize(path), sha256(path)]
  return out


def check_files(folder: str, record: dict[str, list | str], recorded_in: str = "the record"
                ) -> tuple[str, str] | None:
  """The first difference between `folder` and its record, or None when all match.

  Args:
    record: relative path -> [size, sha256], or -> sha256 alone (older records).
    recorded_in: how messages name the record (e.g. "manifest.json").

  Returns:
    (relative path, reason), e.g. ("train.tfrecord-00000-of-00001", "1,024 bytes but
    manifest.json records 4,096 (truncated or changed)"), or None.
  """
  for name, want in sorted(record.items()):
    path = os.path.join(folder, name)
    size, digest = (None, want) if isinstance(want, str) else want
    try:
      st = os.stat(path)
    except FileNotFoundError:
      return name, f"listed in {recorded_in} but missing"
    except OSError as e:
      return name, os_error(e, path).message
    if not stat.S_ISREG(st.st_mode):
      return name, "not a regular file"
    if size is not None and st.st_size != size:
      return name, (f"{st.st_size:,} bytes but {recorded_in} records {size:,} (truncated or "
                    "changed)")
    try:
      if sha256(path) != digest:
        return name, f"sha256 differs from {recorded_in} (changed or corrupted)"
    except OSError as e:
      return name, os_error(e, path).message
  return None


def remove_stale(folder: str, patterns: tuple[str, ...]) -> list[str]:
  """Removes what interrupted runs left in `folder` (glob `patterns`); returns the paths."""
  removed = []
  for pattern in patterns:
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), pattern))):
      if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
      else:
        try:
          os.remove(path)
        except OSError:
          continue
      if not os.path.lexists(path):
        removed.append(path)
  if removed:
    warn(f"removed {len(removed)} temporary file(s) of an interrupted run: "
         + ", ".join(os.path.basename(p) for p in removed[:5])
         + (", ..." if len(removed) > 5 else ""))
  return removed


def folder_slot(path: str, what: str) -> None:
  """DataError unless `path` is absent or a folder (e.g. a file where `prepared/` belongs)."""
  if not os.path.lexists(path) or os.path.isdir(path):
    return
  if os.path.islink(path):
    try:
      os.stat(path)
    except OSError as e:
      raise os_error(e, path, f"{what} must be a folder") from None
    raise DataError(path, f"a symbolic link to a file, not a folder ({what} is written here)")
  raise DataError(path, f"not a folder (it is a file; {what} is written here: move it away)")


def ensure_folder(path: str, what: str) -> None:
  """Creates the folder `path` (and its parents); DataError naming the real reason when
  it cannot be created or written (a file in the way, no permission, ...)."""
  folder_slot(path, what)
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise os_error(e, path, f"cannot create {what}") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise DataError(path, f"permission denied (cannot write {what})")
