"""Pieces every reader shares: text normalisation and Events assembly."""

from __future__ import annotations

import re

import numpy as np

from genret_jax.data.schema import REC, SEARCH, Catalog, Events
from genret_jax.errors import DataError, quote

# Function words removed from category-derived queries (Ai et al. 2017 remove
# stopwords). Kept short on purpose: content words such as "top", "back",
# "front" (stopwords in some long lists) name product categories here.
STOPWORDS = frozenset("""
a an and are as at be but by for from in into is it its of on or s the their
to with without &""".split())

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def normalize_query(text: str) -> str:
  """Lowercase, strip, collapse runs of whitespace to one space."""
  return " ".join(str(text).lower().split())


def category_query(path: list[str] | tuple[str, ...]) -> str:
  """Ai et al. (2017) product-search query from one category path.

  The path's words, lowercased, with stopwords and repeated words removed,
  in path order: ["Skin Care", "Face", "Creams & Moisturizers"] ->
  "skin care face creams moisturizers".
  """
  seen, words = set(), []
  for w in _WORD.findall(" ".join(path).lower()):
    if w in STOPWORDS or w in seen:
      continue
    seen.add(w)
    words.append(w)
  return " ".join(words)


def numeric_ids(keys: np.ndarray | list[str]) -> bool:
  """True when every key is ASCII decimal digits within the int64 range (such ids are
  numbered numerically). '²', '٣' or a 24-digit id make the ids plain strings."""
  keys = [str(k) for k in keys]
  joined = "".join(keys)
  if not keys or not joined.isascii() or not joined.isdigit() or not all(keys):
    return False
  return all(len(k) < 19 or (len(k.lstrip("0")) <= 19 and int(k) < 1 << 63) for k in keys)


def dense_ids(keys: np.ndarray, numeric: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Dense int32 indices for string keys.

  Args:
    keys: str[E] (object array).
    numeric: order the distinct keys numerically (all keys must pass
      `numeric_ids`); otherwise by first appearance.

  Returns:
    (int32[E] index, str[K] distinct keys in index order).
  """
  keys = np.asarray(keys, dtype=object)
  if keys.size == 0:
    return np.zeros(0, np.int32), np.zeros(0, dtype=object)
  uniq, first, inverse = np.unique(keys.astype(str), return_index=True, return_inverse=True)
  if numeric:
    order = np.argsort(uniq.astype(np.int64), kind="stable")
  else:
    order = np.argsort(first, kind="stable")
  rank = np.empty_like(order)
  rank[order] = np.arange(order.shape[0])
  return rank[inverse].astype(np.int32), uniq[order].astype(object)


def make_events(user_keys: np.ndarray, item: np.ndarray, timestamp: np.ndarray,
                behaviour: np.ndarray, query: np.ndarray, *, numeric_users: bool = False,
                synthetic_time: bool = False) -> Events:
  """Events sorted by (user, timestamp, input order).

  Args:
    user_keys: str[E] original user ids.
    item: int[E] catalog indices.
    timestamp: int[E].
    behaviour: int[E] REC / SEARCH.
    query: str[E], '' for REC.
    numeric_users: number users by their numeric id instead of first appearance.
    synthetic_time: timestamps are sequence positions.
  """
  user, user_ids = dense_ids(user_keys, numeric=numeric_users)
  timestamp = np.asarray(timestamp, dtype=np.int64)
  order = np.lexsort((np.arange(user.shape[0]), timestamp, user))
  query = np.asarray(query, dtype=object)
  return Events(
      user=user[order],
      item=np.asarray(item, dtype=np.int32)[order],
      timestamp=timestamp[order],
      behaviour=np.asarray(behaviour, dtype=np.int8)[order],
      query=query[order] if query.size else np.zeros(0, dtype=object),
      user_ids=user_ids,
      synthetic_time=synthetic_time)


def check_unique(path: str, keys: np.ndarray, lines: np.ndarray, field: str,
                 what: str = "item id") -> None:
  """DataError at the first repeated key, naming the line of its first use."""
  keys = np.asarray(keys, dtype=object).astype(str)
  if keys.size == 0:
    return
  order = np.argsort(keys, kind="stable")
  s = keys[order]
  repeat = np.nonzero(s[1:] == s[:-1])[0]
  if repeat.size == 0:
    return
  row = int(order[repeat + 1].min())
  first_row = int(np.nonzero(keys == keys[row])[0][0])
  raise DataError(path, f"duplicate {what} {quote(str(keys[row]))} (first at line "
                  f"{int(lines[first_row])})", line=int(lines[row]), field=field)


def check_known(path: str, index: np.ndarray, keys: np.ndarray, lines: np.ndarray,
                field: str, catalog_path: str) -> None:
  """DataError at the first key whose lookup index is -1."""
  bad = np.nonzero(index < 0)[0]
  if bad.size:
    row = int(bad[0])
    raise DataError(path, f"unknown item id {quote(str(keys[row]))} (not in {catalog_path})",
                    line=int(lines[row]), field=field)


def check_catalog_events(catalog: Catalog, events: Events) -> None:
  """Internal invariants every reader guarantees (a bug, not bad input, if broken)."""
  n = events.num_events
  assert events.item.dtype == np.int32 and events.user.dtype == np.int32
  assert events.behaviour.dtype == np.int8 and events.timestamp.dtype == np.int64
  assert all(a.shape == (n,) for a in (events.item, events.timestamp, events.behaviour,
                                       events.query))
  if n:
    assert events.item.min() >= 0 and events.item.max() < catalog.num_items
    rec = events.behaviour == REC
    assert np.all(events.query[rec] == "")
    assert np.all(events.query[events.behaviour == SEARCH] != "")
  for v in catalog.fields.values():
    assert v.shape == (catalog.num_items,)
