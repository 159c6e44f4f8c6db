"""Validated file access shared by the readers.

Every function here either returns clean data or raises a one-line
`DataError` naming `file:line: field`. Files are read whole (the datasets this
project targets fit in memory), decoded strictly, and `.gz` files are checked
for truncation before any parsing starts.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import zlib

import numpy as np

from genret_jax.errors import DataError


def require_file(path: str | os.PathLike) -> pathlib.Path:
  """The path as a Path, or DataError when it is not an existing file."""
  p = pathlib.Path(path)
  if not p.is_file():
    raise DataError(str(p), "missing file" if not p.exists() else "not a regular file")
  return p


def _gunzip(path: pathlib.Path, raw: bytes) -> bytes:
  """Decompresses every gzip member; a truncated stream is a DataError."""
  out = []
  data = raw
  while data:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
      out.append(d.decompress(data))
      out.append(d.flush())
    except zlib.error as e:
      done = b"".join(out)
      raise DataError(str(path), f"corrupt gzip data ({e})", line=done.count(b"\n") + 1) from None
    if not d.eof:
      done = b"".join(out)
      raise DataError(str(path), "truncated .gz file (compressed stream ends before its "
                      "end-of-stream marker)", line=done.count(b"\n") + 1)
    data = d.unused_data.lstrip(b"\0")
  return b"".join(out)


def read_bytes(path: str | os.PathLike) -> bytes:
  """The file's bytes, transparently gunzipped when the name ends in `.gz`."""
  p = require_file(path)
  raw = p.read_bytes()
  if p.name.endswith(".gz"):
    raw = _gunzip(p, raw)
  return raw


def read_text(path: str | os.PathLike, encoding: str = "utf-8",
              columns: list[str] | None = None, delimiter: str | None = None) -> str:
  """The decoded text; undecodable bytes raise DataError at their line.

  Args:
    path: the file (`.gz` allowed).
    encoding: strict codec, `utf-8` unless the format says otherwise (e.g.
      ml-100k's u.item is latin-1).
    columns, delimiter: when `delimiter` is given, the error also names the
      column the bad byte falls in (counted by delimiters on that line), from
      `columns` or else from the file's first line.
  """
  raw = read_bytes(path)
  try:
    text = raw.decode(encoding)
  except UnicodeDecodeError as e:
    line_start = raw.rfind(b"\n", 0, e.start) + 1
    line_no = raw.count(b"\n", 0, e.start) + 1
    field = None
    if delimiter and not columns:       # name columns by the file's own header line
      first = raw.split(b"\n", 1)[0].decode(encoding, errors="replace")
      columns = [c.strip() for c in first.rstrip("\r").split(delimiter)]
    if columns and delimiter:
      col = raw[line_start:e.start].count(delimiter.encode())
      field = columns[col] if col < len(columns) else f"column {col + 1}"
    raise DataError(str(path), f"invalid {encoding} byte 0x{raw[e.start]:02x} at byte "
                    f"{e.start - line_start + 1} of the line", line=line_no, field=field) from None
  if text.startswith("\ufeff"):
    text = text[1:]
  return text


class Table:
  """A delimited file with a header: columns as lists of strings + line numbers.

  Attributes:
    path: the file.
    columns: header name -> list[str] of that column, one entry per row.
    lines: int64[rows], 1-based physical line where each row starts.
  """

  def __init__(self, path: str, columns: dict[str, list[str]], lines: np.ndarray):
    self.path = path
    self.columns = columns
    self.lines = lines

  def __len__(self) -> int:
    return int(self.lines.shape[0])

  def line(self, row: int) -> int:
    return int(self.lines[row])

  def error(self, row: int, field: str, message: str) -> DataError:
    return DataError(self.path, message, line=self.line(row), field=field)

  def column(self, name: str) -> np.ndarray:
    """str array of one column."""
    return np.asarray(self.columns[name], dtype=object)


def read_table(path: str | os.PathLike, required: list[str], *, delimiter: str = ",",
               encoding: str = "utf-8", header: list[str] | None = None) -> Table:
  """Reads a CSV/TSV file, checking the header and every row's width.

  Args:
    path: the file (`.gz` allowed).
    required: column names that must be present.
    delimiter: field separator.
    encoding: strict text codec.
    header: column names for a headerless file (then every row is data).

  Returns:
    A Table holding every required column (plus any other named column).
  """
  path = str(path)
  require_file(path)
  text = read_text(path, encoding, columns=header, delimiter=delimiter)
  quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
  body_start = 0
  if header is None:
    first = text.split("\n", 1)[0]
    if not first.strip():
      raise DataError(path, "empty file (no header line)", line=1)
    if quoting == csv.QUOTE_NONE or '"' not in first:
      names = [c.strip() for c in first.rstrip("\r").split(delimiter)]
      body_start, start_line = len(first) + 1, 2
    else:
      names, body_start, start_line = None, 0, 1
  else:
    names, start_line = list(header), 1
  if names is not None:
    for name in required:
      if name not in names:
        raise DataError(path, f"missing column (header has: {', '.join(names)})", line=1,
                        field=name)
    fast = _split_plain(text[body_start:], delimiter, len(names), quoting, start_line)
    if fast is not None:
      cells, lines = fast
      width = len(names)
      return Table(path, {n: cells[c::width] for c, n in enumerate(names)}, lines)
  reader = csv.reader(io.StringIO(text[body_start:], newline=""), delimiter=delimiter,
                      quoting=quoting)
  if names is None:
    names = [c.strip() for c in next(reader)]
    for name in required:
      if name not in names:
        raise DataError(path, f"missing column (header has: {', '.join(names)})", line=1,
                        field=name)
    start_line = reader.line_num + 1
  width = len(names)
  rows, lines = [], []
  prev = start_line - 1
  offset = 1 if body_start else 0   # the header line read above
  for row in reader:
    first = prev + 1
    prev = reader.line_num + offset
    if not row or (len(row) == 1 and not row[0].strip()):
      continue                      # blank line
    if len(row) != width:
      field = names[min(len(row), width - 1)] if len(row) < width else None
      raise DataError(path, f"expected {width} fields ({delimiter!r}-separated), found "
                      f"{len(row)}", line=first, field=field)
    rows.append(row)
    lines.append(first)
  cols = list(zip(*rows)) if rows else [()] * width
  columns = {n: list(c) for n, c in zip(names, cols)}
  return Table(path, columns, np.asarray(lines, dtype=np.int64))


def _split_plain(body: str, delimiter: str, width: int, quoting: int, first_line: int
                 ) -> tuple[list[str], np.ndarray] | None:
  """Fast path for files without quotes, CRs or blank lines: (cells, lines).

  Returns None (use the csv module) unless every line has exactly `width`
  fields, checked with vectorized byte counts.
  """
  if "\r" in body or (quoting != csv.QUOTE_NONE and '"' in body):
    return None
  if body.endswith("\n"):
    body = body[:-1]
  if not body:
    return [], np.zeros(0, np.int64)
  b = np.frombuffer(body.encode("utf-8"), np.uint8)
  row_end = np.append(np.flatnonzero(b == 10), b.size)
  delims = np.flatnonzero(b == ord(delimiter))
  per_row = np.diff(np.searchsorted(delims, row_end), prepend=0)
  row_len = np.diff(row_end, prepend=-1) - 1
  if np.any(per_row != width - 1) or np.any(row_len == 0):
    return None
  cells = body.replace("\n", delimiter).split(delimiter)
  return cells, np.arange(first_line, first_line + row_end.size, dtype=np.int64)


def parse_int(values: np.ndarray | list[str], *, table_path: str, lines: np.ndarray,
              field: str, what: str = "an integer") -> np.ndarray:
  """int64 array from decimal strings; the first bad one raises DataError.

  Accepts integer-valued floats such as "964982703.0" (some exports write
  them), rejects anything else.
  """
  arr = np.asarray(values, dtype=object)
  try:
    return np.array(list(arr), dtype=np.int64) if arr.size else np.zeros(0, np.int64)
  except (ValueError, OverflowError, TypeError):
    pass
  out = np.empty(arr.shape[0], dtype=np.int64)
  for i, v in enumerate(arr):
    s = str(v).strip()
    try:
      out[i] = int(s)
      continue
    except ValueError:
      pass
    try:
      f = float(s)
    except ValueError:
      f = float("nan")
    if not np.isfinite(f) or f != int(f):
      raise DataError(table_path, f"not {what}: {s!r}", line=int(lines[i]), field=field)
    out[i] = int(f)
  return out


def parse_float(values, *, table_path: str, lines: np.ndarray, field: str) -> np.ndarray:
  """float64 array; the first non-numeric value raises DataError."""
  arr = np.asarray(values, dtype=object)
  try:
    out = np.array(list(arr), dtype=np.float64) if arr.size else np.zeros(0)
  except (ValueError, TypeError):
    out = None
  if out is None or not np.all(np.isfinite(out)):
    for i, v in enumerate(arr):
      try:
        ok = np.isfinite(float(v))
      except ValueError:
        ok = False
      if not ok:
        raise DataError(table_path, f"not a number: {v!r}", line=int(lines[i]), field=field)
  return out


def read_jsonl(path: str | os.PathLike, *, python_literals: bool = False
               ) -> tuple[list[dict], np.ndarray]:
  """One JSON object per line (`.gz` allowed).

  Args:
    path: the file.
    python_literals: also accept Python dict literals (the 2014 McAuley
      metadata is written with `str(dict)`), parsed with ast.literal_eval.

  Returns:
    (records, int64[rows] line numbers). Blank lines are skipped.
  """
  import ast  # pylint: disable=g-import-not-at-top
  path = str(path)
  text = read_text(path)
  records, lines = [], []
  for n, line in enumerate(text.split("\n"), start=1):
    s = line.strip()
    if not s:
      continue
    try:
      obj = json.loads(s)
    except json.JSONDecodeError as e:
      obj = None
      if python_literals:
        try:
          obj = ast.literal_eval(s)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
          obj = None
      if obj is None:
        raise DataError(path, f"not a JSON object ({e.msg} at column {e.colno})",
                        line=n) from None
    if not isinstance(obj, dict):
      raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", line=n)
    records.append(obj)
    lines.append(n)
  return records, np.asarray(lines, dtype=np.int64)


def lookup(index_of: dict[str, int], keys: np.ndarray) -> np.ndarray:
  """int64 indices of `keys` (str array); -1 where unknown. Vectorized via np."""
  vocab = np.asarray(list(index_of.keys()), dtype=object)
  idx = np.asarray(list(index_of.values()), dtype=np.int64)
  if keys.size == 0:
    return np.zeros(0, np.int64)
  vk = vocab.astype(str)
  order = np.argsort(vk)
  sorted_vocab = vk[order]
  k = np.asarray(keys).astype(str)
  pos = np.searchsorted(sorted_vocab, k)
  pos_c = np.minimum(pos, len(sorted_vocab) - 1)
  found = (len(sorted_vocab) > 0) & (sorted_vocab[pos_c] == k)
  return np.where(found, idx[order][pos_c], -1)
