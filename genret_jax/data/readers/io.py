"""Validated file access and field checks shared by the readers.

Every function here either returns clean data or raises a one-line
`DataError` naming `file:line: field`. Files are read whole (the datasets this
project targets fit in memory), decoded strictly, and `.gz` files are checked
for truncation before any parsing starts. Field checks (docs/data.md,
"Validation rules"): integers are ASCII decimal (an integer-valued float such
as `964982703.0` is accepted) within the signed 64-bit range; JSON values are
checked against their kind (an id or query is a scalar, a text field a scalar
or a list of scalars); an error quotes at most ~80 characters of the value.
"""

from __future__ import annotations

import ast
import csv
import errno
import io
import json
import math
import os
import pathlib
import re
import stat
import sys
import zlib

import numpy as np

from genret_jax.errors import DataError, os_error, quote

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# A CSV field may be long (a description); the csv module's default cap is 128 KiB.
_CSV_FIELD_LIMIT = 1 << 30


def _stat(p: pathlib.Path, kind: str) -> os.stat_result:
  """os.stat of `p`, or DataError naming the real reason (missing, broken link, loop, ...)."""
  try:
    return os.stat(p)
  except OSError as e:
    if e.errno == errno.ENOENT:
      if os.path.islink(p):
        raise DataError(str(p), f"broken symbolic link (points to {os.readlink(p)}, which "
                        "does not exist)") from None
      raise DataError(str(p), f"missing {kind}") from None
    raise os_error(e, p) from None


def require_file(path: str | os.PathLike) -> pathlib.Path:
  """The path as a Path, or DataError when it is not an existing, readable file."""
  p = pathlib.Path(path)
  st = _stat(p, "file")
  if stat.S_ISDIR(st.st_mode):
    raise DataError(str(p), "is a folder, not a file")
  if not stat.S_ISREG(st.st_mode):
    raise DataError(str(p), "not a regular file")
  return p


def require_folder(path: str | os.PathLike) -> pathlib.Path:
  """The path as a Path, or DataError when it is not an existing folder we can list."""
  p = pathlib.Path(path)
  if not stat.S_ISDIR(_stat(p, "folder").st_mode):
    raise DataError(str(p), "not a folder (it is a file)")
  try:
    os.listdir(p)
  except OSError as e:
    raise os_error(e, p, "cannot list the folder") from None
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
  try:
    raw = p.read_bytes()
  except OSError as e:
    raise os_error(e, p, "cannot read the file") from None
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
    _check_header(path, names if header is None else list(dict.fromkeys(names)), required)
    fast = _split_plain(text[body_start:], delimiter, len(names), quoting, start_line)
    if fast is not None:
      cells, lines = fast
      width = len(names)
      return Table(path, {n: cells[c::width] for c, n in enumerate(names)}, lines)
  csv.field_size_limit(_CSV_FIELD_LIMIT)
  reader = csv.reader(io.StringIO(text[body_start:], newline=""), delimiter=delimiter,
                      quoting=quoting)
  rows_iter = _csv_rows(reader, path, 1 if body_start else 0)
  if names is None:
    names = [c.strip() for c in next(rows_iter)]
    _check_header(path, names, required)
    start_line = reader.line_num + 1
  width = len(names)
  rows, lines = [], []
  prev = start_line - 1
  offset = 1 if body_start else 0   # the header line read above
  for row in rows_iter:
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


def _check_header(path: str, names: list[str], required: list[str]) -> None:
  """DataError naming the first required column the header lacks, or a column named twice
  (which of the two would be read is ambiguous)."""
  seen: dict[str, int] = {}
  for c, name in enumerate(names):
    if name in seen:
      raise DataError(path, f"column named twice in the header (columns {seen[name] + 1} and "
                      f"{c + 1})", line=1, field=name)
    seen[name] = c
  for name in required:
    if name not in names:
      shown = ", ".join(n if len(n) <= 40 else n[:40] + "..." for n in names[:20])
      more = f", ... ({len(names)} columns)" if len(names) > 20 else ""
      raise DataError(path, f"missing column (header has: {shown}{more})", line=1, field=name)


def _csv_rows(reader, path: str, offset: int):
  """The csv reader's rows; a malformed line (e.g. an unterminated quote) is a DataError."""
  while True:
    try:
      yield next(reader)
    except StopIteration:
      return
    except csv.Error as e:
      raise DataError(path, f"malformed CSV line ({e})", line=reader.line_num + offset) from None


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


def _kind(v) -> str:
  """How an error names the JSON type of a value."""
  if isinstance(v, bool):
    return "true/false"
  return {list: "a list", tuple: "a list", dict: "an object", type(None): "null"}.get(
      type(v), type(v).__name__)


def int_value(v, what: str = "an integer") -> int | str:
  """`v` (a str, int or float) as an int64-range integer, or the error message.

  Accepted: ASCII decimal text (`+12`, `-3`), ints, and integer-valued floats
  or float text (`964982703.0`, `1.7e9`). Rejected: other text, non-ASCII
  digits (`²`, `٣`), true/false, lists, objects, null, non-finite or
  fractional numbers, anything outside [-2^63, 2^63 - 1].
  """
  if isinstance(v, bool) or not isinstance(v, (str, int, float, np.integer, np.floating)):
    return f"expected {what}, got {_kind(v)}: {quote(v)}"
  if isinstance(v, (int, np.integer)):
    n = int(v)
  elif isinstance(v, (float, np.floating)):
    if not math.isfinite(v) or v != int(v):
      return f"not {what}: {quote(v)}"
    n = int(v)
  else:
    s = v.strip()
    if _INT_TEXT.fullmatch(s) and len(s.lstrip("+-").lstrip("0")) > 19:
      return f"out of range for {what} (a signed 64-bit integer): {quote(s)}"  # int() refuses
    if _INT_TEXT.fullmatch(s):                                             # > 4300 digits
      n = int(s)
    elif _FLOAT_TEXT.fullmatch(s) and math.isfinite(float(s)) and float(s) == int(float(s)):
      n = int(float(s))
    elif any(c.isdigit() for c in s) and not s.isascii():
      return f"not {what} (only the ASCII digits 0-9 are read as numbers): {quote(s)}"
    else:
      return f"not {what}: {quote(s)}"
  if not INT64_MIN <= n <= INT64_MAX:
    shown = quote(v.strip() if isinstance(v, str) else n)
    return f"out of range for {what} (a signed 64-bit integer): {shown}"
  return n


def _plain_ascii(arr: np.ndarray) -> bool:
  """All values are str, together pure ASCII without '_' (numpy's fast int/float parsing
  would accept Unicode digits and '1_000', which we reject)."""
  try:
    joined = "".join(arr)
  except TypeError:
    return False
  return joined.isascii() and "_" not in joined


def parse_int(values: np.ndarray | list, *, table_path: str, lines: np.ndarray,
              field: str, what: str = "an integer") -> np.ndarray:
  """int64 array from decimal strings or JSON numbers; the first bad one raises DataError.

  See `int_value` for what is accepted (e.g. "964982703.0", which some exports
  write, but not "12.5", "²" or a 20-digit number beyond int64).
  """
  arr = np.asarray(values, dtype=object)
  if not arr.size:
    return np.zeros(0, np.int64)
  if _plain_ascii(arr) or all(type(v) is int for v in arr):  # pylint: disable=unidiomatic-typecheck
    try:
      return np.array(list(arr), dtype=np.int64)
    except (ValueError, OverflowError, TypeError):
      pass
  out = np.empty(arr.shape[0], dtype=np.int64)
  for i, v in enumerate(arr):
    n = int_value(v, what)
    if isinstance(n, str):
      raise DataError(table_path, n, line=int(lines[i]), field=field)
    out[i] = n
  return out


def float_value(v) -> float | str:
  """`v` (ASCII decimal text or a number) as a finite float, or the error message."""
  if isinstance(v, bool) or not isinstance(v, (str, int, float, np.integer, np.floating)):
    return f"expected a number, got {_kind(v)}: {quote(v)}"
  if isinstance(v, str):
    if not _FLOAT_TEXT.fullmatch(v.strip()):
      return f"not a number: {quote(v)}"
    v = float(v)
  f = float(v)
  return f if math.isfinite(f) else f"not a finite number: {quote(v)}"


def parse_float(values, *, table_path: str, lines: np.ndarray, field: str) -> np.ndarray:
  """float64 array; the first non-numeric or non-finite value raises DataError."""
  arr = np.asarray(values, dtype=object)
  out = None
  if arr.size and _plain_ascii(arr):
    try:
      out = np.array(list(arr), dtype=np.float64)
    except (ValueError, TypeError):
      out = None
  if out is not None and np.all(np.isfinite(out)):
    return out
  out = np.zeros(arr.shape[0], dtype=np.float64)
  for i, v in enumerate(arr):
    f = float_value(v)
    if isinstance(f, str):
      raise DataError(table_path, f, line=int(lines[i]), field=field)
    out[i] = f
  return out


def json_text(v, *, path: str, line: int, field: str, kind: str = "text",
              sep: str = ", ") -> str:
  """A JSON value checked against its kind, as text.

  Args:
    v: the value (missing / null -> '').
    kind: "id" (a string or a number: an item or user id), "string" (a string:
      behaviour), "scalar" (a string or a number: a query), "text" (a scalar or
      a list of scalars, joined with `sep`: an item text field).

  Raises:
    DataError naming file:line: field when the value has another type (a list
    where one value belongs, an object, true/false where a string belongs).
  """
  if v is None:
    return ""
  numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
  if isinstance(v, str) or (numeric and kind != "string"):
    return str(v)
  if kind == "text":
    if isinstance(v, bool):
      return str(v).lower()
    if isinstance(v, (list, tuple)) and all(
        isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in v):
      return sep.join(str(x) for x in v)
    expected = "text, a number or a list of them"
  else:
    expected = {"id": "a string or a number", "string": "a string",
                "scalar": "a string or a number"}[kind]
  raise DataError(path, f"expected {expected}, got {_kind(v)}: {quote(v)}", line=line,
                  field=field)


class _DuplicateKey(Exception):
  pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
  """json object_pairs_hook: a key given twice would silently keep the last value."""
  out = dict(pairs)
  if len(out) != len(pairs):
    seen = set()
    raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
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
  path = str(path)
  text = read_text(path)
  records, lines = [], []
  for n, line in enumerate(text.split("\n"), start=1):
    s = line.strip()
    if not s:
      continue
    try:
      obj = json.loads(s, object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:
      raise DataError(path, "key appears twice in the JSON object", line=n,
                      field=str(e)) from None
    except (ValueError, RecursionError) as e:   # JSONDecodeError, or a > 4300-digit number
      obj = None
      if python_literals:
        try:
          obj = ast.literal_eval(s)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
          obj = None
      if obj is None:
        why = (f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError)
               else "nested too deeply" if isinstance(e, RecursionError)
               else f"a number with more than {sys.get_int_max_str_digits()} digits")
        raise DataError(path, f"not a JSON object ({why})", line=n) from None
    if not isinstance(obj, dict):
      raise DataError(path, f"expected a JSON object, got {_kind(obj)}", line=n)
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
