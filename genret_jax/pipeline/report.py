"""`{workdir}/results.json` + `results.md`: generative models and baselines, then the analyses."""

from __future__ import annotations

import os
from typing import Mapping

from genret_jax.analysis.registry import ANALYSES
from genret_jax.evaluation import collapse
from genret_jax.evaluation import results as results_lib
from genret_jax.pipeline import common
from genret_jax.report.tables import atomic_write


def _analysis_markdown(analysis: Mapping) -> str:
  """Each analysis's Markdown section (ANALYSES[name].markdown), in the order run."""
  lines = []
  for name, result in analysis.items():
    if result and name in ANALYSES:
      lines += [""] + ANALYSES[name].markdown(result)
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
