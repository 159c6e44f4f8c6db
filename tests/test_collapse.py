"""Collapse warnings: a generative model at popularity level is flagged, a learning one is not."""

import numpy as np

from genret_jax.evaluation.collapse import collapse_warnings, top1_stats


def test_top1_stats_count_distinct_items_and_the_largest_share():
  items = np.array([[3, 1], [3, 2], [5, 3], [-1, -1]])
  assert top1_stats(items) == {"top1_distinct_items": 2.0, "top1_max_share": 0.5}


def _results(gen_r10, distinct, share, pop_r10=0.30, queries=1000):
  return {"Gen_R": {"rec": {"recall@10": gen_r10, "top1_distinct_items": distinct,
                            "top1_max_share": share, "num_queries": queries}},
          "Pop_R": {"rec": {"recall@10": pop_r10}}}


def test_a_model_that_learns_is_not_flagged():
  assert collapse_warnings(_results(0.60, 400, 0.05)) == []


def test_each_reason_is_named():
  (line,) = collapse_warnings(_results(0.31, 3, 0.72))
  assert line.startswith("WARNING: Gen_R rec looks collapsed to popularity: ")
  assert "only 3 distinct items over 1000 queries" in line
  assert "one item is the top-1 of 72% of the queries" in line
  assert "recall@10 0.3100 is within noise of Pop_R's 0.3000 (2 SE = 0.0290)" in line
  (line,) = collapse_warnings(_results(0.29, 200, 0.1))        # metrics alone
  assert "within noise of Pop_R" in line and "distinct" not in line
  # 5 SE above popularity with many distinct items: fine; no Pop_R row: only top-1 checks.
  assert collapse_warnings(_results(0.38, 200, 0.1)) == []
  assert collapse_warnings({"Gen_R": _results(0.3, 200, 0.1)["Gen_R"]}) == []
