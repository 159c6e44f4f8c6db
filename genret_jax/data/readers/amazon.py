"""Amazon product data: the sequential layout and the raw McAuley JSON files.

Search events follow the standard Amazon product-search construction (Ai et
al. 2017; JSR, UniSAR, GenSAR): for an interaction with an item whose
category path is known, the query is the path's words (lowercased, stopwords
and repeated words removed, `common.category_query`), issued by that user at
that time. Every interaction is a rec event; interactions whose item has a
non-empty category query are also search events, at the same timestamp.

* Sequential layout (e.g. ../shared/data/amazon-beauty): `<Name>.txt` with one
  line per user, "user item1 item2 ..." in time order, and
  `derived_item_attributes.tsv` (item_id, asin, brand_guess | brand,
  categories = path joined by '|'). There are no timestamps: an event's
  timestamp is its position in the user's sequence (0, 1, ...) and
  `Events.synthetic_time` is True.
* Raw McAuley files: reviews (2014 `reviews_<Cat>[_5].json[.gz]`, 2018
  `<Cat>[_5].json[.gz]`: reviewerID, asin, unixReviewTime) and metadata (2014
  `meta_<Cat>.json[.gz]`, Python dict literals with `categories`, a list of
  paths; 2018 `meta_<Cat>.json[.gz]`, JSON with `category`, one path). The
  root level of each path (the dataset's top category, e.g. "Beauty") is
  dropped when `drop_root`. With several paths, each interaction's query uses
  one of the item's distinct queries, chosen uniformly with `seed`.
"""

from __future__ import annotations

import html
import os
import pathlib

import numpy as np

from genret_jax.data.readers import common, io
from genret_jax.data.schema import REC, SEARCH, Catalog, Events
from genret_jax.errors import DataError, quote

ATTRIBUTES_FILE = "derived_item_attributes.tsv"
_NOT_SEQUENCES = {"source.txt", "readme.txt", "license.txt"}


def _brand(b: str) -> str:
  b = html.unescape(str(b)).strip()
  return "" if b.lower() in ("unknown", "none", "n/a") else b


def _interleave(users: np.ndarray, items: np.ndarray, times: np.ndarray,
                queries: np.ndarray, numeric_users: bool, synthetic_time: bool) -> Events:
  """Rec event for every interaction + a search event where the query is non-empty."""
  n = items.shape[0]
  has_q = queries != ""
  m = int(has_q.sum())
  return common.make_events(
      np.concatenate([users, users[has_q]]), np.concatenate([items, items[has_q]]),
      np.concatenate([times, times[has_q]]),
      np.concatenate([np.full(n, REC, np.int8), np.full(m, SEARCH, np.int8)]),
      np.concatenate([np.full(n, "", dtype=object), queries[has_q]]),
      numeric_users=numeric_users, synthetic_time=synthetic_time)


def find_sequence_file(path: pathlib.Path) -> pathlib.Path:
  """The one `*.txt` sequence file in a sequential-layout folder."""
  cands = sorted(f for f in path.glob("*.txt") if f.name.lower() not in _NOT_SEQUENCES)
  if len(cands) != 1:
    found = ", ".join(f.name for f in cands) or "none"
    raise DataError(str(path), f"expected exactly one '<Name>.txt' sequence file "
                    f"(found: {found}); set data.amazon.sequence_file")
  return cands[0]


def read_amazon_sequential(sequence_file: str | pathlib.Path,
                           attributes_file: str | pathlib.Path) -> tuple[Catalog, Events]:
  """Reads the sequential layout (see module doc).

  Args:
    sequence_file: "user item1 item2 ..." per line, time ordered.
    attributes_file: TSV with item_id, categories and optionally asin,
      brand_guess or brand, title, description.

  Returns:
    Catalog with fields brand, categories (path joined by " > ") and title /
    description when the TSV has them; Events with synthetic timestamps.
  """
  seq_path = str(io.require_file(sequence_file))
  attrs = io.read_table(attributes_file, ["item_id", "categories"], delimiter="\t")
  item_ids = np.asarray([s.strip() for s in attrs.columns["item_id"]], dtype=object)
  empty = np.nonzero(item_ids == "")[0]
  if empty.size:
    raise attrs.error(int(empty[0]), "item_id", "empty item id")
  common.check_unique(attrs.path, item_ids, attrs.lines, "item_id")
  paths = [[c.strip() for c in s.split("|") if c.strip()] for s in attrs.columns["categories"]]
  fields = {}
  for name in ("title", "description"):
    if name in attrs.columns:
      fields[name] = np.asarray([html.unescape(t).strip() for t in attrs.columns[name]],
                                dtype=object)
  brand_col = "brand" if "brand" in attrs.columns else "brand_guess"
  if brand_col in attrs.columns:
    fields["brand"] = np.asarray([_brand(b) for b in attrs.columns[brand_col]], dtype=object)
  fields["categories"] = np.asarray([" > ".join(p) for p in paths], dtype=object)
  item_query = np.asarray([common.category_query(p) for p in paths], dtype=object)
  catalog = Catalog(item_ids=item_ids, fields=fields)
  index_of = {k: i for i, k in enumerate(item_ids)}

  text = io.read_text(seq_path)
  users, toks, lines, pos = [], [], [], []
  for n, line in enumerate(text.split("\n"), start=1):
    parts = line.split()
    if not parts:
      continue
    if len(parts) < 2:
      raise DataError(seq_path, "a user line needs at least one item after the user id",
                      line=n, field="item_id")
    users.append(parts[0])
    toks.append(parts[1:])
    lines.append(n)
  lines = np.asarray(lines, np.int64)
  user_arr = np.asarray(users, dtype=object)
  common.check_unique(seq_path, user_arr, lines, "user_id", what="user id")
  lengths = np.asarray([len(t) for t in toks], np.int64)
  flat = np.asarray([t for ts in toks for t in ts], dtype=object)
  row = np.repeat(np.arange(len(toks)), lengths)
  starts = np.cumsum(lengths) - lengths
  position = np.arange(flat.shape[0]) - np.repeat(starts, lengths)
  idx = io.lookup(index_of, flat)
  bad = np.nonzero(idx < 0)[0]
  if bad.size:
    k = int(bad[0])
    raise DataError(seq_path, f"unknown item id {quote(flat[k])} (position {int(position[k]) + 1} "
                    f"in the sequence; not in {attrs.path})", line=int(lines[row[k]]),
                    field="item_id")
  events = _interleave(user_arr[row], idx.astype(np.int32), position, item_query[idx],
                       numeric_users=common.numeric_ids(user_arr), synthetic_time=True)
  return catalog, events


# ----------------------------------------------------------------------------- raw McAuley


def find_raw_files(path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
  """(reviews, metadata) JSON[.gz] files of a raw McAuley folder."""
  files = sorted(f for f in path.iterdir()   # any kind: require_file says what is wrong
                 if f.name.endswith(".json") or f.name.endswith(".json.gz"))
  meta = [f for f in files if f.name.startswith("meta_")]
  reviews = [f for f in files if not f.name.startswith("meta_")]
  if len(meta) != 1:
    raise DataError(str(path / "meta_<Category>.json.gz"),
                    f"missing file: expected exactly one metadata file, found "
                    f"{[f.name for f in meta] or 'none'}; set data.amazon.meta_file")
  if len(reviews) != 1:
    raise DataError(str(path / "<Category>.json.gz"),
                    f"missing file: expected exactly one reviews file, found "
                    f"{[f.name for f in reviews] or 'none'}; set data.amazon.reviews_file")
  return reviews[0], meta[0]


def _path_of(p, path: str, line: int, field: str, what: str) -> list[str]:
  """One category path (a list of strings), checked."""
  if not isinstance(p, (list, tuple)) or not all(isinstance(c, str) for c in p):
    raise DataError(path, f"expected {what}, got {_json_kind(p)}: {quote(p)}", line=line,
                    field=field)
  return list(p)


def _json_kind(v) -> str:
  if isinstance(v, (list, tuple)) and v and not all(isinstance(c, (list, tuple)) for c in v):
    return "a list of " + ("strings" if all(isinstance(c, str) for c in v) else "mixed values")
  return {str: "a string", list: "a list", tuple: "a list", dict: "an object"}.get(
      type(v), type(v).__name__)


def _category_paths(rec: dict, drop_root: bool, path: str, line: int) -> list[list[str]]:
  """2014 `categories` (a list of paths) or 2018 `category` (one path); a path is a
  list of strings. Any other shape (e.g. a string) is a DataError, never split."""
  if rec.get("categories") is not None:
    raw = rec["categories"]
    if not isinstance(raw, (list, tuple)):
      raise DataError(path, f"expected a list of category paths (each a list of strings), "
                      f"got {_json_kind(raw)}: {quote(raw)}", line=line, field="categories")
    paths = [_path_of(p, path, line, "categories", "a category path (a list of strings) "
                      "in the list of paths") for p in raw]
  elif rec.get("category") is not None:
    paths = [_path_of(rec["category"], path, line, "category",
                      "one category path (a list of strings)")]
  else:
    paths = []
  out = []
  for p in paths:
    p = [html.unescape(c).strip() for c in p if c.strip()]
    if drop_root and len(p) > 1:
      p = p[1:]
    if p:
      out.append(p)
  return out


def _text(v, path: str, line: int, field: str, limit: int = 0) -> str:
  """A metadata text field (a scalar or a list of scalars, joined with spaces)."""
  s = " ".join(html.unescape(io.json_text(v, path=path, line=line, field=field,
                                          sep=" ")).split())
  return s[:limit] if limit and len(s) > limit else s


def read_amazon_raw(reviews_file: str | pathlib.Path, meta_file: str | pathlib.Path, *,
                    drop_root: bool = True, allow_missing_metadata: bool = False,
                    max_description_chars: int = 1000, seed: int = 0
                    ) -> tuple[Catalog, Events]:
  """Reads raw McAuley 2014/2018 reviews + metadata (see module doc).

  Args:
    reviews_file: reviews JSON lines (`reviewerID`, `asin`, `unixReviewTime`).
    meta_file: metadata lines (JSON, or Python literals for 2014).
    drop_root: drop the first level of every category path.
    allow_missing_metadata: a reviewed asin absent from the metadata becomes
      an item with empty text instead of an error.
    max_description_chars: description text is cut to this many characters
      (0 = no limit).
    seed: picks each interaction's query among an item's several paths.

  Returns:
    Catalog of the reviewed items (in order of first review; metadata of
    never-reviewed items is not kept) with fields title, brand, categories
    (first path, " > "-joined), description; Events with real timestamps.
  """
  meta_path = str(io.require_file(meta_file))
  rev_path = str(io.require_file(reviews_file))
  meta, meta_lines = io.read_jsonl(meta_path, python_literals=True)
  asins = np.asarray([io.json_text(m.get("asin"), path=meta_path, line=int(meta_lines[i]),
                                   field="asin", kind="id").strip()
                      for i, m in enumerate(meta)], dtype=object)
  empty = np.nonzero(asins == "")[0]
  if empty.size:
    raise DataError(meta_path, "missing or empty asin", line=int(meta_lines[empty[0]]),
                    field="asin")
  common.check_unique(meta_path, asins, meta_lines, "asin")
  meta_of = {a: i for i, a in enumerate(asins)}

  reviews, rev_lines = io.read_jsonl(rev_path)
  for field in ("reviewerID", "asin", "unixReviewTime"):
    for i, r in enumerate(reviews):
      if field not in r or r[field] is None or str(r[field]).strip() == "":
        raise DataError(rev_path, "missing field", line=int(rev_lines[i]), field=field)

  def ids(field: str) -> np.ndarray:
    return np.asarray([io.json_text(r[field], path=rev_path, line=int(rev_lines[i]),
                                    field=field, kind="id").strip()
                       for i, r in enumerate(reviews)], dtype=object)
  users, r_asin = ids("reviewerID"), ids("asin")
  times = io.parse_int(np.asarray([r["unixReviewTime"] for r in reviews], dtype=object),
                       table_path=rev_path, lines=rev_lines, field="unixReviewTime",
                       what="an integer timestamp")
  meta_idx = io.lookup(meta_of, r_asin)
  if not allow_missing_metadata:
    common.check_known(rev_path, meta_idx, r_asin, rev_lines, "asin", meta_path)
  item, item_ids = common.dense_ids(r_asin)
  first_row = np.full(item_ids.shape[0], -1, np.int64)
  first_row[item[::-1]] = np.arange(item.shape[0])[::-1]
  item_meta = meta_idx[first_row]

  fields = {k: np.full(item_ids.shape[0], "", dtype=object)
            for k in ("title", "brand", "categories", "description")}
  queries: list[list[str]] = []
  for j, mi in enumerate(item_meta):
    if mi < 0:
      queries.append([])
      continue
    m, line = meta[int(mi)], int(meta_lines[int(mi)])
    paths = _category_paths(m, drop_root, meta_path, line)
    for name in ("title", "brand", "description"):
      fields[name][j] = _text(m.get(name), meta_path, line, name,
                              max_description_chars if name == "description" else 0)
    fields["brand"][j] = _brand(fields["brand"][j])
    fields["categories"][j] = " > ".join(paths[0]) if paths else ""
    qs = list(dict.fromkeys(q for q in (common.category_query(p) for p in paths) if q))
    queries.append(qs)
  n_q = np.asarray([len(q) for q in queries], np.int64)
  flat_q = np.asarray([q for qs in queries for q in qs] or [""], dtype=object)
  q_start = np.cumsum(n_q) - n_q
  rng = np.random.default_rng(seed)
  pick = np.floor(rng.random(item.shape[0]) * np.maximum(n_q[item], 1)).astype(np.int64)
  query = np.where(n_q[item] > 0, flat_q[np.minimum(q_start[item] + pick, flat_q.size - 1)], "")
  catalog = Catalog(item_ids=item_ids, fields=fields)
  events = _interleave(users, item, times, query.astype(object), numeric_users=False,
                       synthetic_time=False)
  return catalog, events


def read_amazon(path: str | pathlib.Path, *, sequence_file: str = "",
                attributes_file: str = ATTRIBUTES_FILE, reviews_file: str = "",
                meta_file: str = "", **raw_knobs) -> tuple[Catalog, Events]:
  """Reads an Amazon folder: the sequential layout when it has the attributes
  TSV (or `sequence_file` is set), else the raw layout.

  File names are relative to `path` (absolute ones are kept). `raw_knobs` go
  to read_amazon_raw (drop_root, allow_missing_metadata,
  max_description_chars, seed).
  """
  p = io.require_folder(path)
  has_tsv = os.path.lexists(p / attributes_file)
  raw = bool(reviews_file or meta_file) or (not sequence_file and not has_tsv)
  if raw and not (reviews_file or meta_file or any(p.glob("*.json"))
                  or any(p.glob("*.json.gz"))):
    raise DataError(str(p / attributes_file), "missing file (an Amazon folder holds "
                    "<Name>.txt + derived_item_attributes.tsv, or raw review + meta_ JSON files)")
  if raw:
    if not reviews_file or not meta_file:
      found_reviews, found_meta = find_raw_files(p)
      reviews_file = reviews_file or str(found_reviews)
      meta_file = meta_file or str(found_meta)
    return read_amazon_raw(p / reviews_file, p / meta_file, **raw_knobs)
  seq = p / sequence_file if sequence_file else find_sequence_file(p)
  return read_amazon_sequential(seq, p / attributes_file)
