"""Flags generative models whose predictions are popularity in disguise.

A model that does not read its input ranks every query alike: a handful of
items take every top-1 slot, and its recall is what the popularity baseline of
the task gets. `collapse_warnings` checks both on the report's results, so a
collapsed model is called out in results.md and the log, never reported as a
finding.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

POPULARITY = {"rec": "Pop_R", "search": "Pop_S"}
MAX_DISTINCT_TOP1 = 5      # at most this many distinct top-1 items: collapsed
MAX_TOP1_SHARE = 0.5       # one item is the top-1 of at least this share of queries
METRIC = "recall@10"


def top1_stats(items) -> dict[str, float]:
  """{'top1_distinct_items', 'top1_max_share'} of ranked items int[Q, R] (-1 = none)."""
  top1 = np.asarray(items)[:, 0]
  top1 = top1[top1 >= 0]
  if not len(top1):
    return {"top1_distinct_items": 0.0, "top1_max_share": 0.0}
  _, counts = np.unique(top1, return_counts=True)
  return {"top1_distinct_items": float(len(counts)),
          "top1_max_share": float(counts.max() / len(np.asarray(items)))}


def collapse_warnings(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[str]:
  """One line per (generative model, task) that looks collapsed, saying why.

  Generative models are the rows with `top1_distinct_items`. Reasons: at most
  MAX_DISTINCT_TOP1 distinct top-1 items, one item top-1 for >= MAX_TOP1_SHARE
  of the queries, or recall@10 within two binomial standard errors of the
  task's popularity baseline (Pop_R for rec, Pop_S for search) when present.
  """
  out = []
  for model, tasks in results.items():
    for task, m in tasks.items():
      if "top1_distinct_items" not in m:
        continue
      reasons = []
      queries = int(m.get("num_queries", 0))
      if m["top1_distinct_items"] <= MAX_DISTINCT_TOP1:
        reasons.append(f"its top-1 items are only {int(m['top1_distinct_items'])} distinct "
                       f"items over {queries} queries")
      if m["top1_max_share"] >= MAX_TOP1_SHARE:
        reasons.append(f"one item is the top-1 of {m['top1_max_share']:.0%} of the queries")
      pop = results.get(POPULARITY.get(task, ""), {}).get(task, {})
      if METRIC in m and METRIC in pop and queries:
        p = pop[METRIC]
        se = math.sqrt(max(p * (1 - p), 1e-12) / queries)
        if abs(m[METRIC] - p) <= 2 * se:
          reasons.append(f"{METRIC} {m[METRIC]:.4f} is within noise of "
                         f"{POPULARITY[task]}'s {p:.4f} (2 SE = {2 * se:.4f})")
      if reasons:
        out.append(f"WARNING: {model} {task} looks collapsed to popularity: "
                   + "; ".join(reasons) + ". Its results say nothing about the task.")
  return out
