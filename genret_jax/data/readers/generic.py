"""Generic canonical-schema files: bring your own data (schema in docs/data.md).

Items file (`.jsonl` / `.json` one object per line, or `.csv` with a header;
`.gz` allowed): `item_id` plus any number of text fields. Events file, same
formats: `user_id`, `item_id`, `timestamp` (integer), `behaviour` (`rec` or
`search`), `query` (non-empty for search, empty or absent for rec).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from genret_jax.data.readers import common, io
from genret_jax.data.schema import BEHAVIOURS, Catalog, Events
from genret_jax.errors import DataError, quote

EVENT_FIELDS = ("user_id", "item_id", "timestamp", "behaviour", "query")
# JSON kind of each known field (io.json_text); any other items field is "text".
FIELD_KINDS = {"item_id": "id", "user_id": "id", "timestamp": "scalar", "behaviour": "string",
               "query": "scalar"}
_SUFFIXES = (".jsonl", ".json", ".csv")


def _format(path: pathlib.Path) -> str:
  name = path.name[:-3] if path.name.endswith(".gz") else path.name
  for s in _SUFFIXES:
    if name.endswith(s):
      return "csv" if s == ".csv" else "jsonl"
  raise DataError(str(path), f"unknown file type: expected one of "
                  f"{', '.join(s + '[.gz]' for s in _SUFFIXES)}")


def find_file(folder: pathlib.Path, stem: str) -> pathlib.Path:
  """The one `<stem>.{jsonl,json,csv}[.gz]` in folder."""
  cands = [folder / f"{stem}{s}{z}" for s in _SUFFIXES for z in ("", ".gz")]
  found = [c for c in cands if os.path.lexists(c)]   # a broken link is reported by its reader
  if len(found) != 1:
    what = "missing file" if not found else f"ambiguous: {[f.name for f in found]}"
    raise DataError(str(folder / f"{stem}.jsonl"), f"{what} (expected exactly one of "
                    f"{stem}.jsonl, {stem}.json, {stem}.csv, optionally .gz); set "
                    f"data.generic.{stem}_file")
  return found[0]


def _read_rows(path: pathlib.Path, required: tuple[str, ...]
               ) -> tuple[list[str], dict[str, list[str]], np.ndarray]:
  """(field names in file order, field -> str values, line numbers)."""
  if _format(path) == "csv":
    t = io.read_table(path, list(required))
    if not len(t):
      raise DataError(str(path), "no rows (the file has only its header)", line=2)
    names = list(t.columns)
    return names, {n: [s if n == "query" else s.strip() for s in t.columns[n]]
                   for n in names}, t.lines
  records, lines = io.read_jsonl(path)
  names: dict[str, None] = {}
  for r in records:
    names.update(dict.fromkeys(r))
  for name in required:
    for i, r in enumerate(records):
      if name not in r:
        raise DataError(str(path), "missing field", line=int(lines[i]), field=name)
  if not records:
    raise DataError(str(path), "no rows (the file is empty)", line=1)
  cols = {n: [io.json_text(r.get(n), path=str(path), line=int(lines[i]), field=n,
                            kind=FIELD_KINDS.get(n, "text")) for i, r in enumerate(records)]
          for n in names}
  for n in ("item_id", "user_id"):
    if n in cols:
      cols[n] = [s.strip() for s in cols[n]]
  return list(names), cols, lines


def read_generic(items_file: str | pathlib.Path, events_file: str | pathlib.Path
                 ) -> tuple[Catalog, Events]:
  """Reads a canonical items file + events file.

  Returns:
    Catalog (item ids and every other items field as text, in file order) and
    Events (users numbered numerically when all ids are integers, else by
    first appearance; `synthetic_time` False).
  """
  items_path = io.require_file(items_file)
  events_path = io.require_file(events_file)
  names, cols, lines = _read_rows(items_path, ("item_id",))
  item_ids = np.asarray(cols["item_id"], dtype=object)
  empty = np.nonzero(item_ids == "")[0]
  if empty.size:
    raise DataError(str(items_path), "empty item id", line=int(lines[empty[0]]),
                    field="item_id")
  common.check_unique(str(items_path), item_ids, lines, "item_id")
  catalog = Catalog(item_ids=item_ids, fields={
      n: np.asarray([" ".join(s.split()) for s in cols[n]], dtype=object)
      for n in names if n != "item_id"})

  _, ev, ev_lines = _read_rows(events_path, EVENT_FIELDS[:4])
  path = str(events_path)
  users = np.asarray(ev["user_id"], dtype=object)
  empty = np.nonzero(users == "")[0]
  if empty.size:
    raise DataError(path, "empty user id", line=int(ev_lines[empty[0]]), field="user_id")
  keys = np.asarray(ev["item_id"], dtype=object)
  idx = io.lookup({k: i for i, k in enumerate(item_ids)}, keys)
  common.check_known(path, idx, keys, ev_lines, "item_id", str(items_path))
  times = io.parse_int(np.asarray(ev["timestamp"], dtype=object), table_path=path,
                       lines=ev_lines, field="timestamp", what="an integer timestamp")
  beh_text = np.asarray([b.strip().lower() for b in ev["behaviour"]], dtype=object)
  known = np.isin(beh_text.astype(str), np.asarray(BEHAVIOURS))
  if not known.all():
    row = int(np.nonzero(~known)[0][0])
    raise DataError(path, f"unknown behaviour {quote(ev['behaviour'][row])} (expected rec or "
                    f"search)", line=int(ev_lines[row]), field="behaviour")
  behaviour = (beh_text == "search").astype(np.int8)
  n = len(users)
  query = np.asarray([" ".join(q.split()) for q in ev.get("query", [""] * n)], dtype=object)
  bad = np.nonzero((behaviour == 1) & (query == ""))[0]
  if bad.size:
    raise DataError(path, "empty query for a search event", line=int(ev_lines[bad[0]]),
                    field="query")
  bad = np.nonzero((behaviour == 0) & (query != ""))[0]
  if bad.size:
    raise DataError(path, "a rec event has a query (set behaviour to search, or leave the "
                    "query empty)", line=int(ev_lines[bad[0]]), field="query")
  events = common.make_events(users, idx, times, behaviour, query,
                              numeric_users=common.numeric_ids(users))
  return catalog, events


def read_generic_folder(folder: str | pathlib.Path, items_file: str = "",
                        events_file: str = "") -> tuple[Catalog, Events]:
  """read_generic on `folder`'s items.* and events.* (or the given names)."""
  p = io.require_folder(folder)
  items = p / items_file if items_file else find_file(p, "items")
  events = p / events_file if events_file else find_file(p, "events")
  return read_generic(items, events)
