"""Ranking metrics (Recall@K, HR@K, NDCG@K, MRR), tie-aware, vectorized numpy.

Duplicate-ID rule. Items that share an identifier come out of the decoder
together, with one score and one `rank` (the beam they came from); their order
among themselves is arbitrary. Each metric is therefore the *expected* value
over all orders of every tie group (McSherry & Najork, ECIR 2008): an item in
a group occupying list positions [s, s + g) is at each of them with
probability 1/g. With no ties this is the usual metric. Consequences: a target
sharing its ID with 2 other items at rank 1 gets HR@1 = 1/3, MRR =
(1 + 1/2 + 1/3) / 3; a group cut by the K boundary counts fractionally.

Definitions (positions 0-based, targets = the relevant set of a query,
missing items count as not retrieved):
  recall@K = E[#targets in top K] / #targets
  hr@K     = P(at least one target in top K)
  ndcg@K   = E[sum over targets in top K of 1/log2(pos + 2)] / IDCG@K,
             IDCG@K = sum_{i < min(#targets, K)} 1/log2(i + 2)
  mrr      = E[1 / (position of the first target + 1)], 0 if none returned.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import digamma, gammaln


def _log_comb(n, k):
  n = np.asarray(n, np.float64)
  k = np.asarray(k, np.float64)
  ok = (k >= 0) & (k <= n)
  out = gammaln(n + 1) - gammaln(np.where(ok, k, 0) + 1) - gammaln(np.where(ok, n - k, 0) + 1)
  return np.where(ok, out, -np.inf)


def _groups(items: np.ndarray, ranks: np.ndarray | None):
  """Start and size of the tie group of each list position. [N, R] each."""
  n, r = items.shape
  pos = np.broadcast_to(np.arange(r), (n, r))
  if ranks is None:
    return pos.copy(), np.ones((n, r), np.int64)
  ranks = np.asarray(ranks)
  boundary = np.ones((n, r), bool)
  boundary[:, 1:] = ranks[:, 1:] != ranks[:, :-1]
  start = np.maximum.accumulate(np.where(boundary, pos, 0), axis=1)
  end_b = np.ones((n, r), bool)
  end_b[:, :-1] = boundary[:, 1:]
  end = np.minimum.accumulate(np.where(end_b, pos, r)[:, ::-1], axis=1)[:, ::-1] + 1
  return start, end - start


def per_query_metrics(items: np.ndarray, targets: np.ndarray, ks: Sequence[int],
                      ranks: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Metrics of every query.

  Args:
    items: int[N, R] ranked retrieved items, -1 padded.
    targets: int[N] or int[N, M] relevant items, -1 padded (distinct per row).
    ks: cut-offs.
    ranks: optional int[N, R] tie groups (equal consecutive values share an
      identifier), e.g. `BeamSearchOutput.ranks`; None = no ties.
  Returns:
    {'recall@K', 'hr@K', 'ndcg@K' for K in ks, 'mrr'} -> float64[N].
  Raises:
    ValueError: on mismatched shapes or a query with no target.
  """
  items = np.asarray(items)
  targets = np.asarray(targets)
  if targets.ndim == 1:
    targets = targets[:, None]
  if items.ndim != 2 or targets.ndim != 2 or items.shape[0] != targets.shape[0]:
    raise ValueError(f"metrics: items {items.shape} and targets {targets.shape} must be "
                     f"[N, R] and [N] / [N, M]")
  if ranks is not None and np.shape(ranks) != items.shape:
    raise ValueError(f"metrics: ranks shape {np.shape(ranks)} != items shape {items.shape}")
  num_rel = (targets >= 0).sum(axis=1)
  if (num_rel == 0).any():
    raise ValueError(f"metrics: query {int(np.argmin(num_rel))} has no target")
  n, r = items.shape
  rel = ((items[:, :, None] == targets[:, None, :]) & (targets >= 0)[:, None, :]).any(-1)
  rel &= items >= 0
  start, size = _groups(items, ranks)
  csum = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(rel, axis=1)], axis=1)
  rows = np.arange(n)[:, None]
  group_rel = csum[rows, start + size] - csum[rows, start]   # relevant items in the group
  is_start = start == np.arange(r)
  out: dict[str, np.ndarray] = {}
  disc = 1.0 / np.log2(np.arange(r + 1) + 2.0)
  for k in ks:
    k = int(k)
    in_k = np.clip(k - start, 0, size) / size                # P(position < K)
    out[f"recall@{k}"] = (rel * in_k).sum(1) / num_rel
    # hr: 1 if a relevant group lies fully in the top K, else the straddling group.
    full = (is_start & (group_rel > 0) & (start + size <= k)).any(1)
    m = np.clip(k - start, 0, size)
    p_none = np.exp(_log_comb(size - group_rel, m) - _log_comb(size, m))
    straddle = is_start & (group_rel > 0) & (start < k) & (start + size > k)
    hr_straddle = np.where(straddle, 1.0 - p_none, 0.0).max(1)
    out[f"hr@{k}"] = np.where(full, 1.0, hr_straddle)
    f = np.concatenate([[0.0], np.cumsum(np.where(np.arange(r) < k, disc[:r], 0.0))])
    dcg = (rel * (f[start + size] - f[start]) / size).sum(1)
    idcg = np.cumsum(disc)[np.minimum(num_rel, k) - 1]
    out[f"ndcg@{k}"] = dcg / idcg
  # mrr: the first group holding a target; min position of group_rel targets among size.
  first = np.argmax(is_start & (group_rel > 0), axis=1)
  found = (is_start & (group_rel > 0)).any(1)
  s, g, c = start[np.arange(n), first], size[np.arange(n), first], group_rel[np.arange(n), first]
  mrr = np.zeros(n)
  for j in range(int(size.max()) if r else 0):
    p = np.exp(_log_comb(g - 1 - j, c - 1) - _log_comb(g, c))
    mrr += np.where(found & (j <= g - c), p / (s + 1 + j), 0.0)
  out["mrr"] = mrr
  return out


def ranking_metrics(items: np.ndarray, targets: np.ndarray, ks: Sequence[int],
                    ranks: np.ndarray | None = None) -> dict[str, float]:
  """Mean of `per_query_metrics` over queries: {metric: float}."""
  return {name: float(v.mean()) for name, v in
          per_query_metrics(items, targets, ks, ranks).items()}


def sample_negatives(num_items: int, positives: np.ndarray, num_negatives: int,
                     seed: int, weights: np.ndarray | None = None) -> np.ndarray:
  """Candidates for the sampled protocol: the positive first, then negatives.

  Negatives are distinct per query, never the positive, drawn uniformly or
  with probability proportional to `weights` (e.g. popularity), vectorized
  (Gumbel top-k over chunks of queries).

  Args:
    num_items: catalog size (> num_negatives).
    positives: int[N] target item per query.
    num_negatives: negatives per query.
    seed: RNG seed.
    weights: optional float[num_items] >= 0 sampling weights.
  Returns:
    int32[N, 1 + num_negatives].
  """
  positives = np.asarray(positives, np.int64)
  if num_items <= num_negatives:
    raise ValueError(f"sample_negatives: {num_negatives} negatives need more than "
                     f"{num_items} items")
  rng = np.random.default_rng(seed)
  with np.errstate(divide="ignore"):
    logw = (np.zeros(num_items) if weights is None
            else np.log(np.asarray(weights, np.float64)))
  out = np.empty((positives.shape[0], 1 + num_negatives), np.int32)
  out[:, 0] = positives
  chunk = max(1, 2**24 // num_items)       # bounded memory: ~128 MB of keys at a time
  for lo in range(0, positives.shape[0], chunk):
    pos = positives[lo:lo + chunk]
    keys = logw[None, :] + rng.gumbel(size=(pos.shape[0], num_items))
    keys[np.arange(pos.shape[0]), pos] = -np.inf
    out[lo:lo + chunk, 1:] = np.argpartition(-keys, num_negatives - 1,
                                             axis=1)[:, :num_negatives]
  return out


def tie_group_metrics(greater: np.ndarray, equal: np.ndarray,
                         ks: Sequence[int]) -> dict[str, np.ndarray]:
  """Per-query metrics of one target whose tie group is [greater, greater + equal).

  For scorers that give every item a score (BM25, popularity, SASRec): from the
  number of items scored above the target (`greater`) and the size of its tie
  group including itself (`equal`), the expectation over all orders of the tie
  group (McSherry & Najork 2008): the target is at each position of its group
  with probability 1 / equal. Equal to `per_query_metrics` on the complete
  ranked list with tie `ranks` (tested).

  Returns:
    {'recall@K', 'hr@K', 'ndcg@K', 'mrr'} -> float64[Q].
  """
  s = np.asarray(greater, np.int64)
  g = np.asarray(equal, np.int64)
  if (g < 1).any() or (s < 0).any():
    raise ValueError("tie counts need greater >= 0 and equal >= 1")
  kmax = max(int(k) for k in ks)
  disc = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(kmax) + 2.0))])
  out = {}
  for k in ks:
    k = int(k)
    hit = np.clip(k - s, 0, g) / g
    out[f"recall@{k}"] = hit
    out[f"hr@{k}"] = hit.copy()
    out[f"ndcg@{k}"] = (disc[np.minimum(s + g, k)] - disc[np.minimum(s, k)]) / g
  # mean of 1 / (p + 1) over p in [s, s + g): (H(s + g) - H(s)) / g, H(n) = psi(n + 1) + gamma.
  out["mrr"] = (digamma(s + g + 1.0) - digamma(s + 1.0)) / g
  return out
