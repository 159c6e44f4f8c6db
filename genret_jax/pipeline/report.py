"""`{workdir}/results.json` + `results.md`: generative models and baselines, then the analyses."""

from __future__ import annotations

import os
from typing import Mapping

from genret_jax.evaluation import collapse
from genret_jax.evaluation import results as results_lib
from genret_jax.pipeline import common
from genret_jax.report.tables import atomic_write


def _analysis_markdown(analysis: Mapping) -> str:
  lines = []
  if analysis.get("h1"):
    lines += ["", "## H1: popularity of predicted vs target items",
              "KL(target || predicted) over log2 popularity bins (nats, lower = closer); "
              "mean popularity percentile of predicted items (targets in the first row).", "",
              "| task | model | KL | mean percentile | mean count |", "|---|---|---:|---:|---:|"]
    for task, r in analysis["h1"].items():
      t = r["target"]
      lines.append(f"| {task} | (targets) | | {t['mean_percentile']:.1f} | {t['mean_count']:.1f} |")
      for m, s in r["models"].items():
        lines.append(f"| {task} | {m} | {s['kl']:.4f} | {s['mean_percentile']:.1f} | "
                     f"{s['mean_count']:.1f} |")
    lines += ["", "Plots: " + ", ".join(f"plots/h1_{t}.png" for t in analysis["h1"])]
  if analysis.get("h2"):
    h2 = analysis["h2"]
    lines += ["", "## H2: ID-token embeddings vs content and co-occurrence neighbours",
              f"Overlap of the {h2['k']} nearest neighbours (chance {h2['chance_overlap']:.4f}).",
              "", "| model | content overlap | co-occurrence overlap |", "|---|---:|---:|"]
    for m, s in h2["models"].items():
      lines.append(f"| {m} | {s['content']['overlap']:.4f} | {s['cooccurrence']['overlap']:.4f} |")
    lines += ["", "Plot: plots/h2_tsne.png"]
  return "\n".join(lines) + "\n" if lines else ""


def write_report(workdir: str, results: Mapping, analysis: Mapping, title: str = "") -> str:
  """Writes results.json / results.md (process 0 only); returns the Markdown."""
  warnings = collapse.collapse_warnings(results)
  for line in warnings:
    common.log(line)
  flagged = "".join(f"> **{w}**\n>\n" for w in warnings)
  text = ((f"# {title}\n\n" if title else "") + (flagged + "\n" if flagged else "")
          + results_lib.results_markdown(results) + _analysis_markdown(analysis))
  if common.is_writer() and results:
    results_lib.write_results(results, workdir)
    atomic_write(os.path.join(workdir, "results.md"), text)
  return text
