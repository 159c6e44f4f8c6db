"""Paper tables over seeds: mean ± std, best in bold, paired t-test markers.

Input (`per_seed`): {model: {dataset: {metric: [value of seed 0, 1, ...]}}},
position s being the same seed (same data, same negatives, same training
seed) for every model. `collect_seeds` builds it from per-seed
`results.json`-style dicts.

Layout: one row per model (input order), one column per (dataset, metric)
(first-seen order, or `columns`). A cell is `mean ± std` (std with ddof=1;
only the mean for one seed), `–` when the model lacks that column, bold when
its displayed mean is the column's highest, then a marker when the model is
in `compare` and differs significantly from the column's reference model
(`significance.HIGHER` = higher, `LOWER` = lower; two-sided paired t-test,
alpha 0.05 by default).

What is paired (`paired`):
  'seeds'   — the model's value at seed s with the reference's value at seed
              s (n = number of seeds; Penha et al.'s follow-up protocol:
              mean of 5 seeds, paired t-test).
  'queries' — per-query values from `per_query` ({model: {dataset: {metric:
              [float[Q] per seed]}}}): each query's value averaged over the
              seeds, paired by query (n = Q; the evaluation queries are the
              same in every seed).

The reference of a column: `reference` is one model name for every column,
or a mapping looked up by '{dataset}/{metric}', then '{metric}', then the
metric's task prefix (the part before '/', e.g. 'rec' in 'rec/recall@30'),
then '*'.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Mapping, Sequence

import numpy as np

from genret_jax.report.significance import HIGHER, LOWER, paired_ttest

_ABBREV = {"recall": "R", "ndcg": "N", "hr": "HR", "mrr": "MRR"}


def metric_label(metric: str) -> str:
  """'rec/recall@30' -> 'rec R@30'; 'ndcg@10' -> 'N@10'; unknown names unchanged."""
  task, _, name = metric.rpartition("/")
  kind, at, k = name.partition("@")
  short = _ABBREV.get(kind, kind) + (f"@{k}" if at else "")
  return f"{task} {short}" if task else short


def collect_seeds(per_seed_results: Sequence[Mapping]) -> dict:
  """[{model: {dataset: {metric: value}}} per seed] -> {model: {dataset: {metric: [values]}}}.

  Raises:
    ValueError: when a seed lacks a (model, dataset, metric) another seed has.
  """
  keys = [{(m, d, k) for m, ds in r.items() for d, ks in ds.items() for k in ks}
          for r in per_seed_results]
  if not keys:
    raise ValueError("collect_seeds: no seeds")
  for s, ks in enumerate(keys):
    if ks != keys[0]:
      missing = sorted(keys[0] ^ ks)[0]
      raise ValueError(f"collect_seeds: seed {s} and seed 0 differ at {missing}")
  out: dict = {}
  for m, ds in per_seed_results[0].items():
    out[m] = {d: {k: [float(r[m][d][k]) for r in per_seed_results] for k in ks}
              for d, ks in ds.items()}
  return out


def _reference_of(reference, dataset: str, metric: str) -> str | None:
  if isinstance(reference, str):
    return reference
  for key in (f"{dataset}/{metric}", metric, metric.rpartition("/")[0], "*"):
    if key and key in reference:
      return reference[key]
  return None


def _check_values(model, dataset, metric, values) -> np.ndarray:
  v = np.asarray(values, np.float64).reshape(-1)
  if v.size == 0 or not np.isfinite(v).all():
    raise ValueError(f"report: results[{model!r}][{dataset!r}][{metric!r}] must be a "
                     f"non-empty list of finite numbers")
  return v


def _query_means(per_query, model, dataset, metric) -> np.ndarray:
  try:
    seeds = per_query[model][dataset][metric]
  except KeyError:
    raise ValueError(f"report: paired='queries' but per_query[{model!r}][{dataset!r}]"
                     f"[{metric!r}] is missing") from None
  arr = np.asarray(seeds, np.float64)
  arr = arr[None] if arr.ndim == 1 else arr
  if arr.ndim != 2 or arr.shape[1] == 0 or not np.isfinite(arr).all():
    raise ValueError(f"report: per_query[{model!r}][{dataset!r}][{metric!r}] must be "
                     f"[float[Q] per seed], finite")
  return arr.mean(0)


def summarize(per_seed: Mapping, *, reference: str | Mapping[str, str] = "",
              compare: Sequence[str] = (), paired: str = "seeds",
              per_query: Mapping | None = None, alpha: float = 0.05,
              columns: Sequence[tuple[str, str]] | None = None) -> dict:
  """Means, stds and paired tests of every cell (the JSON form of the table).

  Returns:
    {'columns': [[dataset, metric]], 'models': [names], 'paired', 'alpha',
     'cells': {model: {dataset: {metric: {'mean', 'std', 'n', 'values',
        'reference', 'p_value', 't', 'mean_diff', 'marker'}}}}}
     ('reference' .. 'marker' only for models in `compare`).
  Raises:
    ValueError: bad nesting or values, unknown paired mode, a compared model
      without a reference or with a different number of seeds / queries.
  """
  if paired not in ("seeds", "queries"):
    raise ValueError(f"report: paired={paired!r} must be 'seeds' or 'queries'")
  if paired == "queries" and per_query is None:
    raise ValueError("report: paired='queries' needs per_query")
  unknown = [m for m in compare if m not in per_seed]
  if unknown:
    raise ValueError(f"report: compared model {unknown[0]!r} has no results")
  if columns is None:
    columns = []
    for ds in per_seed.values():
      if not isinstance(ds, Mapping):
        raise ValueError("report: results must be {model: {dataset: {metric: [values]}}}")
      for d, ms in ds.items():
        if not isinstance(ms, Mapping):
          raise ValueError(f"report: results[..][{d!r}] must be {{metric: [values]}}")
        columns += [(d, m) for m in ms if (d, m) not in columns]
  cells: dict = {}
  for model, ds in per_seed.items():
    cells[model] = {}
    for d, m in columns:
      if m not in ds.get(d, {}):
        continue
      v = _check_values(model, d, m, ds[d][m])
      cell = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
              "n": int(v.size), "values": v.tolist()}
      if model in compare:
        ref = _reference_of(reference, d, m)
        if ref is None or m not in per_seed.get(ref, {}).get(d, {}):
          raise ValueError(f"report: no reference results for {model!r} at {d!r} {m!r} "
                           f"(reference {ref!r})")
        if ref != model:
          if paired == "seeds":
            a, b = v, _check_values(ref, d, m, per_seed[ref][d][m])
          else:
            a, b = (_query_means(per_query, model, d, m), _query_means(per_query, ref, d, m))
          if a.size != b.size:
            raise ValueError(f"report: {model!r} has {a.size} {paired} at {d!r} {m!r}, "
                             f"reference {ref!r} has {b.size}")
          test = paired_ttest(a, b, alpha)
          cell.update(reference=ref, p_value=test.p_value, t=test.t,
                      mean_diff=test.mean_diff, marker=test.marker)
      cells[model].setdefault(d, {})[m] = cell
  return {"columns": [list(c) for c in columns], "models": list(per_seed), "paired": paired,
          "alpha": alpha, "cells": cells}


def markdown_table(summary: Mapping, *, digits: int = 4, title: str = "",
                   labels: Mapping[str, str] | None = None) -> str:
  """The paper-layout Markdown table of a `summarize` result, with a legend."""
  labels = labels or {}
  cols = [tuple(c) for c in summary["columns"]]
  fmt = f"{{:.{digits}f}}"
  best = {}
  for d, m in cols:
    shown = [float(fmt.format(summary["cells"][mod][d][m]["mean"]))
             for mod in summary["models"] if m in summary["cells"][mod].get(d, {})]
    best[(d, m)] = max(shown) if shown else None
  head = [f"{d} {labels.get(m, metric_label(m))}" for d, m in cols]
  lines = []
  if title:
    lines += [f"**{title}**", ""]
  lines += ["| model | " + " | ".join(head) + " |", "|---|" + "---:|" * len(cols)]
  for mod in summary["models"]:
    row = []
    for d, m in cols:
      c = summary["cells"][mod].get(d, {}).get(m)
      if c is None:
        row.append("–")
        continue
      text = fmt.format(c["mean"]) + (f" ± {fmt.format(c['std'])}" if c["n"] > 1 else "")
      if float(fmt.format(c["mean"])) == best[(d, m)]:
        text = f"**{text}**"
      row.append(text + c.get("marker", ""))
    lines.append(f"| {mod} | " + " | ".join(row) + " |")
  ns = sorted({c["n"] for ds in summary["cells"].values() for ms in ds.values()
               for c in ms.values()})
  seeds = "/".join(str(n) for n in ns)
  unit = "seed" if summary["paired"] == "seeds" else "query (per-query values averaged over seeds)"
  lines += ["", f"Mean ± std (ddof=1) over {seeds} seed(s); best mean in bold. "
            f"{HIGHER} / {LOWER}: significantly higher / lower than the task-specific "
            f"reference (two-sided paired t-test, paired by {unit}, "
            f"p < {summary['alpha']:g})."]
  refs = sorted({(c["reference"], mod) for mod, ds in summary["cells"].items()
                 for ms in ds.values() for c in ms.values() if "reference" in c})
  if refs:
    lines.append("Compared: " + "; ".join(f"{m} vs {r}" for r, m in refs) + ".")
  return "\n".join(lines) + "\n"


def atomic_write(path: str, text: str) -> None:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_report")
  with os.fdopen(fd, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_paper_table(per_seed: Mapping, out_prefix: str, *, title: str = "",
                      digits: int = 4, labels: Mapping[str, str] | None = None,
                      **summarize_kwargs) -> tuple[str, str]:
  """Writes `{out_prefix}.md` (the table) and `{out_prefix}.json` (the summary).

  Every check runs before anything is written; both files are written
  atomically. `summarize_kwargs` go to `summarize` (reference, compare,
  paired, per_query, alpha, columns).
  Returns:
    (markdown path, json path).
  """
  summary = summarize(per_seed, **summarize_kwargs)
  text = markdown_table(summary, digits=digits, title=title, labels=labels)
  blob = json.dumps(summary, indent=1, ensure_ascii=False) + "\n"
  md, js = f"{out_prefix}.md", f"{out_prefix}.json"
  atomic_write(js, blob)
  atomic_write(md, text)
  return md, js
