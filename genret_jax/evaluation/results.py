"""W/results.json and W/results.md: {model: {task: {metric: value}}}."""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Mapping


def _metric_order(name: str):
  m = re.fullmatch(r"([a-z_]+)@(\d+)", name)
  kind = m.group(1) if m else name
  rank = {"recall": 0, "hr": 1, "ndcg": 2, "mrr": 3}.get(kind, 4)
  return (rank, kind, int(m.group(2)) if m else 0)


# The compact table's columns, in this order, where any row has them (sampled_* come
# from GenSAR's 1 + 99 candidate protocol).
COMPACT_METRICS = ("recall@10", "recall@30", "ndcg@10", "mrr",
                   "sampled_hr@10", "sampled_ndcg@10")


def _table(results: Mapping[str, Mapping[str, Mapping[str, float]]], metrics: list[str]
           ) -> list[str]:
  lines = ["| model | task | " + " | ".join(metrics) + " |",
           "|---|---|" + "---:|" * len(metrics)]
  for model, tasks in results.items():
    for task, ms in tasks.items():
      cells = [f"{ms[m]:.4f}" if m in ms else "" for m in metrics]
      lines.append(f"| {model} | {task} | " + " | ".join(cells) + " |")
  return lines


def results_markdown(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
  """Two Markdown tables, a row per (model, task): the compact one (`COMPACT_METRICS`
  that any row has), then every metric under "All metrics"."""
  metrics = sorted({m for tasks in results.values() for ms in tasks.values() for m in ms},
                   key=_metric_order)
  compact = [m for m in COMPACT_METRICS if m in metrics]
  lines = _table(results, compact) if compact else []
  if metrics != compact:
    lines += ([""] if lines else []) + ["### All metrics", ""] + _table(results, metrics)
  return "\n".join(lines) + "\n"


def _atomic_write(path: str, text: str) -> None:
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp_results")
  with os.fdopen(fd, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_results(results: Mapping[str, Mapping[str, Mapping[str, float]]],
                  workdir: str) -> tuple[str, str]:
  """Writes `workdir/results.json` and `workdir/results.md` atomically.

  Args:
    results: {model: {task: {metric: value}}}, values finite floats.
    workdir: existing or new directory.
  Returns:
    (json path, markdown path).
  Raises:
    ValueError: if the nesting is wrong or a value is not a number.
  """
  clean = {}
  for model, tasks in results.items():
    if not isinstance(tasks, Mapping):
      raise ValueError(f"write_results: results[{model!r}] must be {{task: {{metric: v}}}}")
    clean[str(model)] = {}
    for task, ms in tasks.items():
      if not isinstance(ms, Mapping):
        raise ValueError(f"write_results: results[{model!r}][{task!r}] must be "
                         f"{{metric: value}}")
      for m, v in ms.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
          raise ValueError(f"write_results: results[{model!r}][{task!r}][{m!r}] = {v!r} "
                           f"is not a number")
      clean[str(model)][str(task)] = {str(m): float(v) for m, v in ms.items()}
  os.makedirs(workdir, exist_ok=True)
  jpath = os.path.join(workdir, "results.json")
  mpath = os.path.join(workdir, "results.md")
  _atomic_write(jpath, json.dumps(clean, indent=1, sort_keys=True) + "\n")
  _atomic_write(mpath, results_markdown(clean))
  return jpath, mpath
