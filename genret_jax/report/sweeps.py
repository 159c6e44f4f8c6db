"""Simulator / ablation sweeps: metric vs knob per model, as PNG + JSON."""

from __future__ import annotations

import json
from typing import Mapping, Sequence

import numpy as np

from genret_jax.analysis.plots import sweep_plot
from genret_jax.report.tables import atomic_write


def write_sweep(sweep: Mapping[str, Mapping[float, Sequence[float]]], out_prefix: str, *,
                knob: str, metric: str, title: str = "") -> tuple[str, str]:
  """Writes `{out_prefix}.png` (one line per model, mean ± std band over seeds)
  and `{out_prefix}.json` ({'knob', 'metric', 'models': {model: [{'x', 'mean',
  'std', 'values'}] sorted by x}}).

  Args:
    sweep: model -> {knob value: [metric value per seed]}.
  Returns:
    (png path, json path).
  """
  png = sweep_plot(sweep, f"{out_prefix}.png", knob=knob, metric=metric, title=title)
  models = {}
  for name, points in sweep.items():
    rows = []
    for x in sorted(points):
      v = np.asarray(points[x], np.float64)
      rows.append({"x": float(x), "mean": float(v.mean()),
                   "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "values": v.tolist()})
    models[name] = rows
  js = f"{out_prefix}.json"
  atomic_write(js, json.dumps({"knob": knob, "metric": metric, "models": models}, indent=1)
                + "\n")
  return png, js
