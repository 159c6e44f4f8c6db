"""Sampled-candidate lists of the GenSAR evaluation protocol (1 positive + 99 negatives).

* Recommendation: negatives drawn by popularity, without replacement, among the
  items the user never interacted with (any behaviour, any split). Popularity
  is the item's number of TRAIN-split rec events plus one, so items unseen in
  training can still be drawn. Sampling without replacement with probability
  proportional to weight is done as sequential draws (the first distinct,
  allowed items of a stream of weighted draws), vectorized over events, with an
  exact Gumbel-top-k pass for the rare events whose streams run short.
* Search: the 99 items ranked highest by BM25 (bm25s, Lucene variant, k1 1.5,
  b 0.75) for the event's query over the item texts, excluding the target;
  ties (e.g. the many items scoring 0) are broken by a seeded permutation. A
  catalog without any indexable item text scores every item 0 (the seeded
  permutation alone).

Both are deterministic given the seed.
"""

from __future__ import annotations

import logging

import numpy as np

from genret_jax.data.schema import REC, SEARCH, Events
from genret_jax.data.splits import TRAIN
from genret_jax.errors import DataError

NUM_NEGATIVES = 99


def _interaction_keys(events: Events, num_items: int) -> np.ndarray:
  """int64[P] sorted unique user * num_items + item over all events."""
  return np.unique(events.user.astype(np.int64) * num_items + events.item.astype(np.int64))


def rec_negatives(events: Events, split: np.ndarray, targets: np.ndarray, num_items: int,
                  seed: int, num_negatives: int = NUM_NEGATIVES, source: str = "events",
                  chunk: int = 4096) -> np.ndarray:
  """Popularity-sampled negatives for rec events.

  Args:
    events: all events.
    split: int8[E] TRAIN / VALID / TEST.
    targets: int[R] indices of the events to sample for.
    num_items: catalog size.
    seed: sampling seed.
    num_negatives: negatives per event.
    source: named in the error when a user has too few unseen items.
    chunk: events per vectorized block.

  Returns:
    int32[R, num_negatives], distinct items per row, none the user interacted with.
  """
  users = events.user[targets].astype(np.int64)
  weights = np.bincount(events.item[(split == TRAIN) & (events.behaviour == REC)],
                        minlength=num_items).astype(np.float64) + 1.0
  keys = _interaction_keys(events, num_items)
  seen_per_user = np.bincount(keys // num_items, minlength=events.num_users)
  short = np.flatnonzero(num_items - seen_per_user[np.unique(users)] < num_negatives)
  if short.size:
    user = np.unique(users)[short[0]]
    raise DataError(source, f"user {events.user_ids[user]} interacted with "
                    f"{seen_per_user[user]} of {num_items} items: fewer than {num_negatives} "
                    "items are left to sample rec negatives from", field="user")
  cdf = np.cumsum(weights / weights.sum())
  rng = np.random.default_rng(seed)
  out = np.empty((len(targets), num_negatives), np.int32)
  for lo in range(0, len(targets), chunk):
    out[lo:lo + chunk] = _sample_block(users[lo:lo + chunk], cdf, weights, keys, num_items,
                                       num_negatives, rng)
  return out


def _allowed(users: np.ndarray, items: np.ndarray, keys: np.ndarray, num_items: int) -> np.ndarray:
  """bool[...]: (user, item) never interacted."""
  k = users * num_items + items
  pos = np.minimum(np.searchsorted(keys, k), len(keys) - 1)
  return keys[pos] != k


def _first_distinct_allowed(draws: np.ndarray, users: np.ndarray, keys: np.ndarray,
                            num_items: int, n: int) -> tuple[np.ndarray, np.ndarray]:
  """The first n distinct allowed items of each row of draws int64[R, M]."""
  rows, m = draws.shape
  ok = _allowed(users[:, None], draws, keys, num_items)
  # First occurrence of each value within its row: stable sort by value.
  order = np.argsort(draws, axis=1, kind="stable")
  sorted_draws = np.take_along_axis(draws, order, axis=1)
  first = np.ones_like(ok)
  first_sorted = np.ones((rows, m), bool)
  first_sorted[:, 1:] = sorted_draws[:, 1:] != sorted_draws[:, :-1]
  np.put_along_axis(first, order, first_sorted, axis=1)
  keep = ok & first
  enough = keep.sum(axis=1) >= n
  pick = np.argsort(~keep, axis=1, kind="stable")[:, :n]
  return np.take_along_axis(draws, pick, axis=1), enough


def _sample_block(users, cdf, weights, keys, num_items, n, rng) -> np.ndarray:
  out = np.empty((len(users), n), np.int64)
  todo = np.arange(len(users))
  m = 2 * n
  for _ in range(4):
    if not todo.size:
      break
    draws = np.minimum(np.searchsorted(cdf, rng.random((todo.size, m)), side="right"),
                       num_items - 1)
    picked, enough = _first_distinct_allowed(draws, users[todo], keys, num_items, n)
    out[todo[enough]] = picked[enough]
    todo = todo[~enough]
    m *= 4
  if todo.size:   # exact Gumbel-top-k over the allowed items
    scores = np.log(weights)[None, :] + rng.gumbel(size=(todo.size, num_items))
    allowed = _allowed(users[todo, None], np.arange(num_items)[None, :], keys, num_items)
    scores = np.where(allowed, scores, -np.inf)
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    out[todo] = np.take_along_axis(top, order, axis=1)
  return out.astype(np.int32)


def search_negatives(item_texts: list[str], queries: np.ndarray, target_items: np.ndarray,
                     seed: int, num_negatives: int = NUM_NEGATIVES, source: str = "items"
                     ) -> np.ndarray:
  """BM25 hard negatives for search events.

  Args:
    item_texts: str[num_items], the text BM25 indexes.
    queries: str[R], each event's query.
    target_items: int[R], each event's clicked item (never a negative).
    seed: seed of the tie-breaking permutation.
    num_negatives: negatives per event (needs num_items > num_negatives).
    source: named in the error when the catalog is too small.

  Returns:
    int32[R, num_negatives], items by decreasing BM25 score, target excluded.
  """
  # bm25s runs a JAX computation when imported (starting the XLA backend): imported
  # here, so that importing the pipeline leaves jax.distributed free to initialize.
  import bm25s  # pylint: disable=g-import-not-at-top
  logging.getLogger("bm25s").setLevel(logging.WARNING)
  num_items = len(item_texts)
  if num_items <= num_negatives:
    raise DataError(source, f"{num_items} items: search negatives need more than "
                    f"{num_negatives}", field="items")
  item_tokens = bm25s.tokenize(list(item_texts), stopwords="en", show_progress=False)
  if item_tokens.vocab:
    retriever = bm25s.BM25()
    retriever.index(item_tokens, show_progress=False)
    index = retriever.scores       # term -> items CSR: data, indices, indptr
    data, items, indptr = (np.asarray(index[k]) for k in ("data", "indices", "indptr"))
    num_terms = len(indptr) - 1
    vocab = {t: i for t, i in retriever.vocab_dict.items() if i < num_terms}
  else:   # no item text has an indexable word: every item scores 0 (tie-break order)
    data, items, indptr, vocab = np.zeros(0, np.float32), np.zeros(0, np.int64), \
        np.zeros(1, np.int64), {}
  distinct, inverse = np.unique(np.asarray(queries, dtype=object).astype(str),
                                return_inverse=True)
  tokens = bm25s.tokenize(list(distinct), stopwords="en", show_progress=False,
                          return_ids=False)
  tiebreak = np.random.default_rng(seed).permutation(num_items)
  by_tiebreak = np.argsort(tiebreak)            # items in tie-breaking order
  top = np.empty((len(distinct), num_negatives + 1), np.int64)
  for q, words in enumerate(tokens):
    term_ids = [vocab[w] for w in words if w in vocab]    # as bm25s get_tokens_ids
    top[q] = _bm25_top_k(term_ids, data, items, indptr, tiebreak, by_tiebreak,
                         num_negatives + 1)
  ranked = top[inverse]                                     # [R, n + 1]
  keep = ranked != np.asarray(target_items, np.int64)[:, None]
  pick = np.argsort(~keep, axis=1, kind="stable")[:, :num_negatives]
  return np.take_along_axis(ranked, pick, axis=1).astype(np.int32)


def _top_k(scores: np.ndarray, tiebreak: np.ndarray, by_tiebreak: np.ndarray, k: int
           ) -> np.ndarray:
  """int64[k]: items by (score desc, tiebreak asc), in O(num_items) (no full sort)."""
  boundary = np.partition(scores, len(scores) - k)[len(scores) - k]   # k-th largest score
  above = np.flatnonzero(scores > boundary)
  above = above[np.lexsort((tiebreak[above], -scores[above]))]
  ties = by_tiebreak[scores[by_tiebreak] == boundary][:k - len(above)]
  return np.concatenate([above, ties])


def _bm25_top_k(term_ids: list[int], data: np.ndarray, items: np.ndarray, indptr: np.ndarray,
                tiebreak: np.ndarray, by_tiebreak: np.ndarray, k: int) -> np.ndarray:
  """`_top_k(bm25s get_scores(query), ...)` without a dense score vector over the catalog.

  Only the items that contain a query term (the "touched" items) can score
  non-zero; their scores are accumulated term by term in query order, in the
  index's dtype, as bm25s does, so they are bit-identical. Every other item
  scores 0, so only the first k of them in tie-break order can be ranked:
  the result is the top k of the touched items plus the first k + #touched
  items in tie-break order. Cost O(#touched + k) instead of O(num_items).

  Args:
    term_ids: the query's term ids (repeats count again), in query order.
    data, items, indptr: bm25s's term -> items CSR index (BM25 weights).
    tiebreak: int[N] tie rank per item; by_tiebreak: items in tie-rank order.
    k: ranked items wanted (<= N).
  Returns:
    int64[k]: items by (score desc, tiebreak asc).
  """
  term_ids = np.asarray(term_ids, np.int64)
  start, end = indptr[term_ids], indptr[term_ids + 1]
  length = end - start
  pos = np.repeat(start - np.cumsum(length) + length, length) + np.arange(length.sum())
  touched, slot = np.unique(items[pos], return_inverse=True)
  acc = np.zeros(touched.size, data.dtype)
  bounds = np.concatenate([[0], np.cumsum(length)])
  for t in range(term_ids.size):    # term by term: one add per item per term
    seg = slice(bounds[t], bounds[t + 1])
    acc[slot[seg]] += data[pos[seg]]
  head = by_tiebreak[:k + touched.size]
  head = head[~np.isin(head, touched)]
  cand = np.concatenate([touched.astype(np.int64), head.astype(np.int64)])
  score = np.concatenate([acc.astype(np.float64), np.zeros(head.size)])
  return cand[np.lexsort((tiebreak[cand], -score))[:k]]


def sample_candidates(events: Events, split: np.ndarray, item_texts: list[str], seed: int,
                      num_negatives: int = NUM_NEGATIVES, source: str = "events"
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Negatives for every evaluation (VALID/TEST) event.

  Returns:
    (eval_events int64[V] ascending event indices with split != TRAIN,
     negatives int32[V, num_negatives]).
  """
  eval_events = np.flatnonzero(split != TRAIN)
  negatives = np.empty((len(eval_events), num_negatives), np.int32)
  is_rec = events.behaviour[eval_events] == REC
  if is_rec.any():
    negatives[is_rec] = rec_negatives(events, split, eval_events[is_rec], len(item_texts),
                                      seed, num_negatives, source)
  is_search = events.behaviour[eval_events] == SEARCH
  if is_search.any():
    ev = eval_events[is_search]
    negatives[is_search] = search_negatives(item_texts, events.query[ev], events.item[ev],
                                            seed + 1, num_negatives, source)
  return eval_events, negatives
