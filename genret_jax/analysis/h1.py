"""H1: do models predict items as popular as the items users actually want?

Penha et al. (RecSys 2024) argue that joint training regularizes each item's
popularity estimate. We measure, per task, how the popularity of predicted
items is distributed compared with that of the target items.

Definitions (popularity = TRAIN interaction count of an item for one task):
  bins: log2 bins of the count: bin 0 = count 0, bin b >= 1 = counts in
    [2^(b-1), 2^b). B = bin of the largest count + 1. Labels '0', '1', '2-3',
    '4-7', ...
  frequencies: share of target items (one per query) and of predicted items
    (the top-`top_k` of every query, -1 padding ignored) in each bin.
  KL: KL(P_target || P_pred) = sum_b P_t(b) log(P_t(b) / P_p(b)) in nats,
    with additive smoothing P(b) = (n_b + alpha) / (n + B alpha) on both
    sides (alpha = 1 by default, so empty bins never give infinities).
    0 means the predictions have the targets' popularity profile; larger
    means over- or under-predicting popular items.
  percentile: mid-rank popularity percentile of an item among all catalog
    items, 100 (#items less popular + #equally popular / 2) / N, in [0, 100];
    reported as the mean over predicted items and over targets.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from genret_jax.analysis import plots


def popularity_bins(popularity: np.ndarray) -> tuple[np.ndarray, list[str]]:
  """(int64[N] log2 bin of every item, bin labels)."""
  pop = np.asarray(popularity)
  if pop.ndim != 1 or pop.size == 0 or (pop < 0).any():
    raise ValueError("h1: popularity must be a non-empty int[num_items] of counts >= 0")
  pop = pop.astype(np.int64)
  bins = np.where(pop > 0, np.floor(np.log2(np.maximum(pop, 1))).astype(np.int64) + 1, 0)
  labels = ["0"] + [str(1 << (b - 1)) if b == 1 else f"{1 << (b - 1)}-{(1 << b) - 1}"
                    for b in range(1, int(bins.max()) + 1)]
  return bins, labels


def popularity_percentiles(popularity: np.ndarray) -> np.ndarray:
  """float64[N] mid-rank percentile of each item's popularity among all items."""
  pop = np.asarray(popularity)
  ordered = np.sort(pop)
  less = np.searchsorted(ordered, pop, side="left")
  equal = np.searchsorted(ordered, pop, side="right") - less
  return 100.0 * (less + 0.5 * equal) / pop.size


def smoothed_kl(p_counts: np.ndarray, q_counts: np.ndarray, alpha: float = 1.0) -> float:
  """KL(P || Q) in nats of two count histograms with additive smoothing alpha."""
  p_counts = np.asarray(p_counts, np.float64)
  q_counts = np.asarray(q_counts, np.float64)
  if alpha <= 0:
    raise ValueError(f"h1: smoothing alpha={alpha} must be > 0")
  b = p_counts.size
  p = (p_counts + alpha) / (p_counts.sum() + b * alpha)
  q = (q_counts + alpha) / (q_counts.sum() + b * alpha)
  return float(np.sum(p * np.log(p / q)))


def _items(predicted: np.ndarray, top_k: int, num_items: int, name: str) -> np.ndarray:
  predicted = np.asarray(predicted)
  if predicted.ndim == 1:
    predicted = predicted[:, None]
  if predicted.ndim != 2:
    raise ValueError(f"h1: predictions[{name!r}] must be int[Q] or int[Q, K]")
  flat = predicted[:, :top_k].reshape(-1)
  flat = flat[flat >= 0]
  if flat.size == 0:
    raise ValueError(f"h1: predictions[{name!r}] has no predicted item")
  if flat.max() >= num_items:
    raise ValueError(f"h1: predictions[{name!r}] has item {flat.max()} >= {num_items}")
  return flat


def h1_analysis(popularity: np.ndarray, predictions: Mapping[str, np.ndarray],
                targets: np.ndarray, *, top_k: int = 1, alpha: float = 1.0,
                plot_path: str | None = None, title: str = "") -> dict:
  """Popularity of predicted vs target items, for several models on one task.

  Args:
    popularity: int[num_items] TRAIN counts of the task (e.g. a row of
      `genret_jax.data.stats.train_popularity`).
    predictions: model name -> int[Q] top-1 or int[Q, K] ranked items
      (-1 padded) for the Q evaluation queries.
    targets: int[Q] target items of those queries.
    top_k: how many predicted items per query count (1 = top-1).
    alpha: smoothing of the KL histograms.
    plot_path: if set, the calibration plot PNG (see `plots.calibration_plot`).
    title: plot title (e.g. 'ml-latest-small / search').
  Returns:
    {'bins': [label per bin],
     'target': {'bin_freq': [B floats], 'mean_percentile', 'mean_count'},
     'models': {name: {'kl', 'bin_freq', 'mean_percentile', 'mean_count',
                       'num_predictions'}}}
  """
  bins, labels = popularity_bins(popularity)
  pop = np.asarray(popularity, np.int64)
  pct = popularity_percentiles(pop)
  n = pop.size
  targets = np.asarray(targets)
  if targets.ndim != 1 or targets.size == 0 or targets.min() < 0 or targets.max() >= n:
    raise ValueError(f"h1: targets must be a non-empty int[Q] of items in [0, {n})")
  if top_k < 1:
    raise ValueError(f"h1: top_k={top_k} must be >= 1")
  if not predictions:
    raise ValueError("h1: no predictions")
  nb = len(labels)

  def summary(items):
    counts = np.bincount(bins[items], minlength=nb)
    return counts, {"bin_freq": (counts / counts.sum()).tolist(),
                    "mean_percentile": float(pct[items].mean()),
                    "mean_count": float(pop[items].mean())}

  t_counts, t_summary = summary(targets)
  models = {}
  for name, pred in predictions.items():
    pred = np.asarray(pred)
    if pred.shape[0] != targets.size:
      raise ValueError(f"h1: predictions[{name!r}] has {pred.shape[0]} rows, "
                       f"targets {targets.size}")
    items = _items(pred, top_k, n, name)
    counts, s = summary(items)
    models[name] = {"kl": smoothed_kl(t_counts, counts, alpha), **s,
                    "num_predictions": int(items.size)}
  out = {"bins": labels, "target": t_summary, "models": models}
  if plot_path:
    plots.calibration_plot(out, plot_path, title=title)
  return out
