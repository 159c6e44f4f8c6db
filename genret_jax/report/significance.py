"""Paired two-sided t-tests (scipy.stats.ttest_rel) and the table markers.

What is paired is up to the caller: in `tables` either the per-seed values
of two models (seed s of one with seed s of the other) or the per-query
values (mean over seeds) of the same evaluation queries.

Degenerate cases never produce NaN:
  n < 2                       -> no test (p_value None, not significant);
  all differences equal to 0  -> p_value 1.0 (identical results);
  all differences equal c != 0 -> p_value 0.0 (the t statistic is infinite:
                                  the same non-zero gap on every pair).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

HIGHER = "†"   # significantly higher than the reference
LOWER = "‡"    # significantly lower than the reference


@dataclasses.dataclass(frozen=True)
class PairedTest:
  """Result of one paired test of `a` against reference `b`.

  Attributes:
    n: number of pairs.
    mean_diff: mean of a - b.
    t: t statistic, None when undefined (n < 2) or infinite.
    p_value: two-sided p, None when n < 2.
    significant: p_value < alpha.
  """
  n: int
  mean_diff: float
  t: float | None
  p_value: float | None
  significant: bool

  @property
  def marker(self) -> str:
    """HIGHER / LOWER when significant in that direction, else ''."""
    if not self.significant or self.mean_diff == 0:
      return ""
    return HIGHER if self.mean_diff > 0 else LOWER


def paired_ttest(a, b, alpha: float = 0.05) -> PairedTest:
  """Two-sided paired t-test of float[n] `a` against float[n] `b`.

  Raises:
    ValueError: different lengths, non-finite values, alpha not in (0, 1).
  """
  a = np.asarray(a, np.float64).reshape(-1)
  b = np.asarray(b, np.float64).reshape(-1)
  if a.shape != b.shape:
    raise ValueError(f"paired t-test: {a.size} values vs {b.size} reference values")
  if not (np.isfinite(a).all() and np.isfinite(b).all()):
    raise ValueError("paired t-test: non-finite value")
  if not 0 < alpha < 1:
    raise ValueError(f"paired t-test: alpha={alpha} must be in (0, 1)")
  n = a.size
  diff = a - b
  mean_diff = float(diff.mean()) if n else 0.0
  if n < 2:
    return PairedTest(n, mean_diff, None, None, False)
  if np.all(diff == diff[0]):
    p = 1.0 if diff[0] == 0 else 0.0
    return PairedTest(n, mean_diff, 0.0 if diff[0] == 0 else None, p, p < alpha)
  res = stats.ttest_rel(a, b)
  p = float(res.pvalue)
  return PairedTest(n, mean_diff, float(res.statistic), p, p < alpha)
