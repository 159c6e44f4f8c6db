"""Pop_R: rank every item by its number of TRAIN rec interactions."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from genret_jax.baselines import ranking
from genret_jax.data.schema import REC, Events
from genret_jax.data.splits import TRAIN


def popularity_scores(events: Events, split: np.ndarray, num_items: int) -> np.ndarray:
  """float64[num_items]: TRAIN rec interaction counts."""
  keep = (events.behaviour == REC) & (split == TRAIN)
  return np.bincount(events.item[keep], minlength=num_items).astype(np.float64)


def evaluate(scores: np.ndarray, targets: np.ndarray, ks: Sequence[int],
             candidates: np.ndarray | None = None) -> dict[str, float]:
  """Metrics of a fixed score vector (float[num_items]) for every target item
  (int[Q]); equal counts are ties: expected metrics over their orders.

  Full ranking over the catalog, or with `candidates` (int[Q, C], each row
  holding its target once: the sampled 1 + 99 protocol) over those items only.
  """
  if candidates is not None:
    candidates = ranking.check_candidates(candidates, targets, len(scores))
    above, ties = ranking.candidate_ranks(scores[candidates], scores[targets])
    return ranking.metrics_from_ranks(above, ks, ties)
  ordered = np.sort(scores)
  right = np.searchsorted(ordered, scores[targets], side="right")
  left = np.searchsorted(ordered, scores[targets], side="left")
  return ranking.metrics_from_ranks(len(scores) - right, ks, right - left - 1)
