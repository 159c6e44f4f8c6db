"""BM25 search baseline (bm25s over item text), full-catalog and sampled protocol.

bm25s builds the BM25 term-weight matrix W[V, N] (one row per vocabulary
term, Lucene variant, k1 = 1.5, b = 0.75 by default). A query's score vector
is the sum of W's rows over its tokens (a repeated token counts again), which
is exactly `bm25s.BM25.get_scores`. We compute it for a batch of queries as
one sparse product `C[Q, V] @ W[V, N]` (C = query term counts) instead of
bm25s's per-query Python loop.

Tokenization is bm25s's default: lower-cased words of >= 2 word characters,
English stop words removed, no stemming; query words absent from the item
text are ignored.

Ties (all items scoring 0 for a query sharing no word with them; items with
the same text length matching the same words) are common. Ranked lists
(`retrieve`) break them by a seeded random permutation of the catalog
(`genret_jax.baselines.topk`), never by item index or candidate position (the
target is the first candidate of the sampled protocol). Metrics
(`bm25_baseline`) default to the expectation over all orders of the target's
tie group, the rule `evaluation.metrics` applies to tied identifiers.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import bm25s
import numpy as np
import scipy.sparse as sp

from genret_jax.baselines.topk import tie_ranks, topk_rows
from genret_jax.data.schema import Catalog
from genret_jax.evaluation import metrics as metrics_lib
from genret_jax.evaluation.metrics import per_query_metrics


@dataclasses.dataclass(frozen=True)
class BM25Index:
  """A BM25 index over item texts.

  Attributes:
    weights: scipy CSR float32[V, N], BM25 weight of term v in item n.
    vocab: term -> row of `weights`.
    tie_rank: int64[N], tie-break order (lower first).
  """
  weights: sp.csr_matrix
  vocab: dict[str, int]
  tie_rank: np.ndarray

  @property
  def num_items(self) -> int:
    return int(self.weights.shape[1])


def _tokenize(texts: Sequence[str]) -> list[list[str]]:
  return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)


def indexable(texts: Sequence[str]) -> bool:
  """Whether some text has a word BM25 indexes (not only stopwords or punctuation)."""
  return any(_tokenize(texts))


def build_index(texts: Sequence[str], k1: float = 1.5, b: float = 0.75,
                seed: int = 0) -> BM25Index:
  """Indexes one text per item (e.g. `Catalog.texts()`).

  Raises:
    ValueError: when no item text has an indexable word.
  """
  tokens = _tokenize(texts)
  if not any(tokens):
    raise ValueError("bm25: no item text contains an indexable word")
  retriever = bm25s.BM25(k1=k1, b=b)
  retriever.index(tokens, show_progress=False)
  s = retriever.scores
  num_terms = len(s["indptr"]) - 1
  weights = sp.csr_matrix((s["data"], s["indices"], s["indptr"]),
                          shape=(num_terms, s["num_docs"]))
  vocab = {t: i for t, i in retriever.vocab_dict.items() if i < num_terms}
  return BM25Index(weights, vocab, tie_ranks(len(texts), seed))


def query_matrix(index: BM25Index, queries: Sequence[str]) -> sp.csr_matrix:
  """float32[Q, V] CSR: how often each indexed term occurs in each query."""
  rows, cols = [], []
  for q, toks in enumerate(_tokenize(queries)):
    ids = [index.vocab[t] for t in toks if t in index.vocab]
    rows.extend([q] * len(ids))
    cols.extend(ids)
  data = np.ones(len(rows), np.float32)
  return sp.csr_matrix((data, (np.asarray(rows, np.int64), np.asarray(cols, np.int64))),
                       shape=(len(queries), index.weights.shape[0]))


def score(index: BM25Index, queries: Sequence[str]) -> np.ndarray:
  """float32[Q, N] BM25 scores of every item for every query."""
  return np.asarray((query_matrix(index, queries) @ index.weights).todense(), np.float32)


def _check_candidates(index: BM25Index, candidates, num_q: int):
  if candidates is None:
    return None
  candidates = np.asarray(candidates)
  if candidates.ndim != 2 or candidates.shape[0] != num_q or candidates.shape[1] == 0:
    raise ValueError(f"bm25: candidates shape {candidates.shape} must be [{num_q}, C]")
  if candidates.min() < 0 or candidates.max() >= index.num_items:
    raise ValueError(f"bm25: candidates must be item indices in [0, {index.num_items})")
  return candidates


def _score_batches(index: BM25Index, queries: Sequence[str], candidates, batch_size: int):
  """Yields (lo, hi, float32[hi - lo, N or C] scores, int64 tie ranks [N] or [hi - lo, C])."""
  cmat = query_matrix(index, queries)
  for lo in range(0, len(queries), batch_size):
    hi = min(len(queries), lo + batch_size)
    s = np.asarray((cmat[lo:hi] @ index.weights).todense(), np.float32)
    if candidates is None:
      yield lo, hi, s, index.tie_rank
    else:
      c = candidates[lo:hi]
      yield lo, hi, np.take_along_axis(s, c, 1), index.tie_rank[c]


def retrieve(index: BM25Index, queries: Sequence[str], k: int,
             candidates: np.ndarray | None = None, batch_size: int = 1024) -> np.ndarray:
  """Ranked items per query (ties by the index's seeded permutation).

  Args:
    index: from `build_index`.
    queries: Q query strings.
    k: list length (<= N, or <= C with candidates).
    candidates: optional int[Q, C] item indices; only these are ranked.
    batch_size: queries scored at once (memory ~ batch_size x N floats).
  Returns:
    int32[Q, k] item indices, best first.
  """
  candidates = _check_candidates(index, candidates, len(queries))
  width = index.num_items if candidates is None else candidates.shape[1]
  if not 1 <= k <= width:
    raise ValueError(f"bm25: k={k} must be in [1, {width}]")
  out = np.empty((len(queries), k), np.int32)
  for lo, hi, s, tie in _score_batches(index, queries, candidates, batch_size):
    pick = topk_rows(s, k, tie)
    out[lo:hi] = pick if candidates is None else np.take_along_axis(candidates[lo:hi], pick, 1)
  return out


def target_tie_counts(index: BM25Index, queries: Sequence[str], targets: np.ndarray,
                      candidates: np.ndarray | None = None,
                      batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
  """Where each target sits in its query's ranking, ties kept as a group.

  Returns:
    (int64[Q] items scored strictly higher than the target, int64[Q] items
    scored equal to it, the target included), over the catalog or the
    query's candidates.
  Raises:
    ValueError: a target missing from its candidate row.
  """
  candidates = _check_candidates(index, candidates, len(queries))
  targets = np.asarray(targets)
  if candidates is not None:
    hit = candidates == targets[:, None]
    if not hit.any(1).all():
      q = int(np.argmin(hit.any(1)))
      raise ValueError(f"bm25: target {targets[q]} of query {q} is not among its candidates")
    where = np.argmax(hit, 1)
  greater = np.empty(len(queries), np.int64)
  equal = np.empty(len(queries), np.int64)
  for lo, hi, s, _ in _score_batches(index, queries, candidates, batch_size):
    col = targets[lo:hi] if candidates is None else where[lo:hi]
    ts = np.take_along_axis(s, col[:, None], 1)
    greater[lo:hi] = (s > ts).sum(1)
    equal[lo:hi] = (s == ts).sum(1)
  return greater, equal


def bm25_baseline(catalog: Catalog, queries: Sequence[str], targets: np.ndarray,
                  ks: Sequence[int], candidates: np.ndarray | None = None, *,
                  k1: float = 1.5, b: float = 0.75, ties: str = "expected", seed: int = 0,
                  per_query: bool = False) -> dict:
  """BM25 over `catalog.texts()`: metrics of the search queries.

  Ties matter for BM25: on Amazon Beauty (category-path queries) 99.8% of
  test queries have several items tied at the 30th score. `ties`:
    'expected' — each metric is its expectation over all orders of the
      target's tie group (`evaluation.metrics.tie_group_metrics`); no seed dependence.
    'random'   — one ranked list with ties broken by the `seed` permutation
      (`retrieve`), scored by `evaluation.metrics.per_query_metrics`.

  Args:
    catalog: the items.
    queries: Q search query strings.
    targets: int[Q] target item per query.
    ks: metric cut-offs.
    candidates: optional int[Q, C] (the sampled protocol: target + negatives);
      None = full catalog.
    k1, b: BM25 parameters.
    per_query: return float64[Q] per metric (for paired tests) instead of means.
  Returns:
    {'recall@K', 'hr@K', 'ndcg@K' for K in ks, 'mrr'} -> float (or float64[Q]).
  """
  targets = np.asarray(targets)
  if targets.shape != (len(queries),):
    raise ValueError(f"bm25: targets shape {targets.shape} must be [{len(queries)}]")
  if not len(queries):
    raise ValueError("bm25: no queries")
  if targets.min() < 0 or targets.max() >= catalog.num_items:
    raise ValueError(f"bm25: targets must be item indices in [0, {catalog.num_items})")
  if ties not in ("expected", "random"):
    raise ValueError(f"bm25: ties={ties!r} must be 'expected' or 'random'")
  if not ks or min(ks) < 1:
    raise ValueError(f"bm25: cut-offs {tuple(ks)} must be >= 1")
  index = build_index(catalog.texts(), k1=k1, b=b, seed=seed)
  candidates = _check_candidates(index, candidates, len(queries))
  if ties == "expected":
    pq = metrics_lib.tie_group_metrics(*target_tie_counts(index, queries, targets, candidates), ks)
  else:
    width = index.num_items if candidates is None else candidates.shape[1]
    items = retrieve(index, queries, min(max(ks), width), candidates)
    pq = per_query_metrics(items, targets, ks)
  return pq if per_query else {name: float(v.mean()) for name, v in pq.items()}
