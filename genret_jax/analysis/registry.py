"""Analyses by name (`config.analyses`): name -> Analysis(run, log_line, markdown).

    ANALYSES[name].run(inputs) -> JSON-able result (analysis.json's `name` section)
    ANALYSES[name].log_line(result) -> one line for the job's log
    ANALYSES[name].markdown(result) -> Markdown lines for results.md

Adding an analysis is a module with these three functions plus one line in
ANALYSES (docs/analysis.md, "How to add an analysis"); genret_jax.pipeline.analyze
runs the configured ones over every trained model.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, NamedTuple

import ml_collections
import numpy as np

from genret_jax.analysis import h1, h2

TASKS = (("rec", 0), ("search", 1))     # task, its row of `popularity`


@dataclasses.dataclass(frozen=True)
class AnalysisInputs:
  """What an analysis sees of the trained models.

  Attributes:
    config: the job config (`analysis` block, `seed`, `data.source`).
    dataset: the PreparedDataset (catalog, events, split).
    popularity: int64[2, N] TRAIN counts per item of rec (row 0) and search (row 1).
    predictions: task -> model display name -> int[Q, R] ranked TEST predictions
      (-1 = none); only models that saved predictions for that task.
    targets: task -> int[Q] the TEST targets of those predictions.
    embeddings: () -> model display name -> float32[N, d] ID-token vectors of the
      rec table (computed through the models when called).
    plots_dir: where PNGs go, or None on processes that do not write.
  """
  config: ml_collections.ConfigDict
  dataset: Any
  popularity: np.ndarray
  predictions: Mapping[str, Mapping[str, np.ndarray]]
  targets: Mapping[str, np.ndarray]
  embeddings: Callable[[], Mapping[str, np.ndarray]]
  plots_dir: str | None

  def plot(self, name: str) -> str | None:
    return os.path.join(self.plots_dir, name) if self.plots_dir else None


class Analysis(NamedTuple):
  run: Callable[[AnalysisInputs], dict]
  log_line: Callable[[dict], str]
  markdown: Callable[[dict], list[str]]


# ---------------------------------------------------------------- H1
def run_h1(inputs: AnalysisInputs) -> dict:
  """{task: h1.h1_analysis result} for each task with predictions; plots h1_<task>.png."""
  out = {}
  for task, row in TASKS:
    if inputs.predictions.get(task):
      out[task] = h1.h1_analysis(
          inputs.popularity[row], inputs.predictions[task], inputs.targets[task],
          top_k=int(inputs.config.analysis.h1_top_k), plot_path=inputs.plot(f"h1_{task}.png"),
          title=f"{inputs.config.data.source} / {task}")
  return out


def h1_log_line(result: dict) -> str:
  return "; ".join(f"H1 {task}: " + ", ".join(f"{m} KL={r['kl']:.3f}"
                                              for m, r in res["models"].items())
                   for task, res in result.items())


def h1_markdown(result: dict) -> list[str]:
  lines = ["## H1: popularity of predicted vs target items",
           "KL(target || predicted) over log2 popularity bins (nats, lower = closer); "
           "mean popularity percentile of predicted items (targets in the first row).", "",
           "| task | model | KL | mean percentile | mean count |", "|---|---|---:|---:|---:|"]
  for task, r in result.items():
    t = r["target"]
    lines.append(f"| {task} | (targets) | | {t['mean_percentile']:.1f} | {t['mean_count']:.1f} |")
    for m, s in r["models"].items():
      lines.append(f"| {task} | {m} | {s['kl']:.4f} | {s['mean_percentile']:.1f} | "
                   f"{s['mean_count']:.1f} |")
  return lines + ["", "Plots: " + ", ".join(f"plots/h1_{t}.png" for t in result)]


# ---------------------------------------------------------------- H2
def run_h2(inputs: AnalysisInputs) -> dict:
  """h2.h2_analysis of every model's rec ID-token vectors; plots h2_tsne.png."""
  ds, a = inputs.dataset, inputs.config.analysis
  user, item = h2.train_sequences(ds.events, ds.split)
  return h2.h2_analysis(
      dict(inputs.embeddings()), ds.catalog.texts(), user, item, k=int(a.h2_k),
      popularity=inputs.popularity[0].astype(np.float64), plot_path=inputs.plot("h2_tsne.png"),
      tsne_items=int(a.tsne_items), tsne_iter=int(a.tsne_iter),
      seed=int(inputs.config.seed), title=str(inputs.config.data.source))


def h2_log_line(result: dict) -> str:
  return "H2 overlap@k content / co-occurrence: " + ", ".join(
      f"{m} {r['content']['overlap']:.3f}/{r['cooccurrence']['overlap']:.3f}"
      for m, r in result["models"].items())


def h2_markdown(result: dict) -> list[str]:
  lines = ["## H2: ID-token embeddings vs content and co-occurrence neighbours",
           f"Overlap of the {result['k']} nearest neighbours (chance "
           f"{result['chance_overlap']:.4f}).", "",
           "| model | content overlap | co-occurrence overlap |", "|---|---:|---:|"]
  for m, s in result["models"].items():
    lines.append(f"| {m} | {s['content']['overlap']:.4f} | {s['cooccurrence']['overlap']:.4f} |")
  return lines + ["", "Plot: plots/h2_tsne.png"]


ANALYSES: dict[str, Analysis] = {
    "h1": Analysis(run_h1, h1_log_line, h1_markdown),
    "h2": Analysis(run_h2, h2_log_line, h2_markdown),
}
