"""PNG plots of the analyses and sweeps (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

import os
import tempfile
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path: str) -> str:
  """Writes `fig` to `path` as PNG atomically (temp file + rename); closes it."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_plot", suffix=".png")
  os.close(fd)
  try:
    fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
  finally:
    plt.close(fig)
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def calibration_plot(h1: Mapping, path: str, title: str = "") -> str:
  """H1 calibration plot: two panels from an `h1.h1_analysis` result.

  Left: share of target items and of each model's predicted items per
  popularity bin. Right: predicted share vs target share per bin (one marker
  per bin, the diagonal = calibrated).
  """
  labels = h1["bins"]
  target = np.asarray(h1["target"]["bin_freq"])
  x = np.arange(len(labels))
  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
  ax0.plot(x, target, "k--o", label="targets")
  top = float(target.max())
  for name, m in h1["models"].items():
    freq = np.asarray(m["bin_freq"])
    top = max(top, float(freq.max()))
    ax0.plot(x, freq, "-o", label=f"{name} (KL {m['kl']:.3f})")
    ax1.plot(target, freq, "o", label=name)
  ax0.set_xticks(x, labels, rotation=45)
  ax0.set_xlabel("item popularity (train interactions)")
  ax0.set_ylabel("share of items")
  ax0.legend(fontsize=8)
  ax1.plot([0, top], [0, top], "k:", lw=1)
  ax1.set_xlabel("target share per popularity bin")
  ax1.set_ylabel("predicted share per popularity bin")
  ax1.legend(fontsize=8)
  fig.suptitle(title or "H1: popularity of predicted vs target items")
  return save_figure(fig, path)


def tsne_panels(coords: Mapping[str, np.ndarray], popularity: np.ndarray, path: str,
                title: str = "") -> str:
  """H2 t-SNE: one panel per model, points coloured by log10(1 + popularity).

  Args:
    coords: model -> float[M, 2] t-SNE coordinates of the same M items.
    popularity: float[M] popularity of those items.
  """
  names = list(coords)
  fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4.2), squeeze=False)
  colour = np.log10(1.0 + np.asarray(popularity, np.float64))
  vmax = max(float(colour.max()), 1e-9)
  for ax, name in zip(axes[0], names):
    xy = np.asarray(coords[name])
    points = ax.scatter(xy[:, 0], xy[:, 1], c=colour, s=6, cmap="viridis", vmin=0.0, vmax=vmax)
    ax.set_title(name)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.colorbar(points, ax=list(axes[0]), label="log10(1 + train popularity)")
  fig.suptitle(title or "H2: t-SNE of item ID embeddings")
  return save_figure(fig, path)


def sweep_plot(sweep: Mapping[str, Mapping[float, Sequence[float]]], path: str, *,
               knob: str, metric: str, title: str = "") -> str:
  """Metric vs knob, one line per model: mean over seeds with a +- std band.

  Args:
    sweep: model -> {knob value: [metric value per seed]}.
  """
  if not sweep:
    raise ValueError("sweep_plot: no models")
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, points in sweep.items():
    if not points:
      raise ValueError(f"sweep_plot: model {name!r} has no points")
    xs = sorted(points)
    vals = [np.asarray(points[x], np.float64) for x in xs]
    if any(v.size == 0 or not np.isfinite(v).all() for v in vals):
      raise ValueError(f"sweep_plot: model {name!r} has an empty or non-finite point")
    mean = np.array([v.mean() for v in vals])
    std = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in vals])
    ax.plot(xs, mean, "-o", label=name)
    ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
  ax.set_xlabel(knob)
  ax.set_ylabel(metric)
  ax.legend()
  ax.grid(alpha=0.3)
  ax.set_title(title or f"{metric} vs {knob}")
  return save_figure(fig, path)
