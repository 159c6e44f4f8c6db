"""Identifier statistics (vectorized numpy) and TIGER's dedup level."""

from __future__ import annotations

import numpy as np


def group_index(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Groups of identical rows.

  Args:
    codes: int[N, L].
  Returns:
    (int64[N] group id per item, int64[G] size per group).
  """
  _, inverse, counts = np.unique(np.asarray(codes), axis=0, return_inverse=True,
                                 return_counts=True)
  return inverse.reshape(-1), counts


def collision_rate(codes: np.ndarray) -> float:
  """1 - (#distinct IDs / #items): 0.0 when every item has its own ID."""
  codes = np.asarray(codes)
  if codes.shape[0] == 0:
    return 0.0
  _, counts = group_index(codes)
  return float(1.0 - len(counts) / codes.shape[0])


def colliding_items(codes: np.ndarray) -> np.ndarray:
  """bool[N]: True for items whose ID some other item also has."""
  inverse, counts = group_index(codes)
  return counts[inverse] > 1


def codebook_usage(codes: np.ndarray, level_sizes: tuple[int, ...]) -> list[float]:
  """Per level: fraction of the codebook's codes used by at least one item."""
  codes = np.asarray(codes)
  return [float(len(np.unique(codes[:, l])) / level_sizes[l]) for l in range(codes.shape[1])]


def code_entropy(codes: np.ndarray, level_sizes: tuple[int, ...]) -> list[float]:
  """Per level: entropy (bits) of the code distribution over items."""
  codes = np.asarray(codes)
  out = []
  for l in range(codes.shape[1]):
    p = np.bincount(codes[:, l], minlength=level_sizes[l]).astype(np.float64)
    p = p[p > 0] / p.sum()
    out.append(float(-(p * np.log2(p)).sum()))
  return out


def dedup_level(codes: np.ndarray) -> tuple[np.ndarray, int]:
  """TIGER's extra token: each item's rank (by item index) among items sharing its ID.

  Args:
    codes: int[N, L].
  Returns:
    (int32[N] extra code, level size = largest group size). Appending the
    extra code as a new level makes every ID unique.
  """
  inverse, counts = group_index(codes)
  n = inverse.shape[0]
  order = np.lexsort((np.arange(n), inverse))          # items grouped, by index
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank_sorted = np.arange(n) - starts[inverse[order]]
  extra = np.empty(n, np.int32)
  extra[order] = rank_sorted
  return extra, int(counts.max()) if n else 1
