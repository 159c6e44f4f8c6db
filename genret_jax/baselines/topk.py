"""Top-k selection with a defined, unbiased tie-break (vectorized numpy).

Scores of retrieval baselines and similarity references tie often (an item
sharing no word with a query scores 0 under BM25; co-occurrence counts are
small integers). `np.argpartition` would then pick among tied items by memory
position, i.e. by item index, which can correlate with popularity or age.
Here ties are broken by a fixed *tie rank* per item: a seeded random
permutation of the catalog (`tie_ranks`). The result is then a deterministic
function of (scores, seed) whose tie order is independent of item indices.

Cost per row is O(N) (one partition; a second only for rows whose k-th
largest score is tied beyond k) plus O(k log k) for the final order.
"""

from __future__ import annotations

import numpy as np


def tie_ranks(num_items: int, seed: int = 0) -> np.ndarray:
  """int64[num_items]: a seeded random permutation; lower = earlier among ties."""
  return np.random.default_rng(seed).permutation(num_items).astype(np.int64)


def topk_rows(scores: np.ndarray, k: int, tie_rank: np.ndarray) -> np.ndarray:
  """Indices of the k largest scores of every row, best first.

  Order: score descending, then `tie_rank` ascending. NaN is not allowed;
  use -inf for entries that must never be chosen (they can still fill the
  last places when fewer than k entries are finite).

  Args:
    scores: float[B, N].
    k: 1 <= k <= N.
    tie_rank: int[N] (shared by all rows) or int[B, N], distinct within a row.
  Returns:
    int64[B, k] column indices.
  """
  scores = np.asarray(scores)
  b, n = scores.shape
  if not 1 <= k <= n:
    raise ValueError(f"topk_rows: k={k} must be in [1, {n}]")
  tie_rank = np.broadcast_to(np.asarray(tie_rank, np.int64), (b, n))
  chosen = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  kth = np.take_along_axis(scores, chosen, 1).min(1, keepdims=True)   # k-th largest score
  # Rows where more than k scores reach the k-th largest: the tied ones at
  # the boundary must be chosen by tie rank. An integer key whose k smallest
  # entries are exactly the wanted set: strictly larger scores first (-1),
  # then the tied ones by tie rank, everything else last (n).
  amb = np.flatnonzero((scores >= kth).sum(1) > k)
  if amb.size:
    s, t, kt = scores[amb], tie_rank[amb], kth[amb]
    key = np.where(s > kt, -1, np.where(s == kt, t, n))
    chosen[amb] = np.argpartition(key, k - 1, axis=1)[:, :k]
  chosen_scores = np.take_along_axis(scores, chosen, 1)
  chosen_ties = np.take_along_axis(tie_rank, chosen, 1)
  order = np.lexsort((chosen_ties, -chosen_scores), axis=1)
  return np.take_along_axis(chosen, order, 1)
