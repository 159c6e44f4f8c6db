"""The analyses of `config.analyses` (genret_jax.analysis.registry) over the trained
models: `{workdir}/analysis.json` and `{workdir}/plots/*.png`.

  H1 (per task): popularity (TRAIN counts of that task) of each model's
    top-`analysis.h1_top_k` predictions vs the targets': smoothed KL and a
    calibration plot `plots/h1_<task>.png`.
  H2: the ID-token vectors of each model (output-head columns, or embedding
    rows when tied; `steps.id_embeddings`) vs content (TF-IDF) and
    co-occurrence (TRAIN sequences) neighbours; t-SNE `plots/h2_tsne.png`
    coloured by TRAIN rec popularity, one panel per model.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from genret_jax import config as config_lib
from genret_jax.analysis.registry import ANALYSES, TASKS, AnalysisInputs
from genret_jax.data import prepared
from genret_jax.data.stats import train_popularity
from genret_jax.pipeline import common, steps


def run_analyze(ctx: steps.Context, models: list[tuple[str, ml_collections.ConfigDict]],
                eval_stamps: dict[str, str]) -> dict:
  """{name: ANALYSES[name].run result} for each name of `config.analyses` (stamped cache)."""
  config, workdir = ctx.config, ctx.workdir
  wanted = config_lib.split_list(config.analyses)   # names checked by config.validate
  if not wanted or not models:
    return {}
  want = common.stamp(wanted, config.analysis, sorted(eval_stamps.items()))
  path = os.path.join(workdir, "analysis.json")
  cached = common.read_stamped(path, want)
  if cached is not None:
    common.log(f"analyze: reusing {path}")
    return cached
  ds = prepared.load(steps.prepared_path(workdir))
  predictions, targets = _predictions(workdir, models)
  writer = common.is_writer()
  plots = os.path.join(workdir, "plots")
  if writer:
    os.makedirs(plots, exist_ok=True)
  inputs = AnalysisInputs(
      config=config, dataset=ds, popularity=train_popularity(ds.events, ds.split,
                                                             ds.catalog.num_items),
      predictions=predictions, targets=targets,
      embeddings=lambda: {common.display_name(label): steps.id_embeddings(ctx, label, m)["rec"]
                          for label, m in models},
      plots_dir=plots if writer else None)
  out = {}
  for name in wanted:
    out[name] = ANALYSES[name].run(inputs)
    if out[name]:
      common.log(ANALYSES[name].log_line(out[name]))
  if writer:
    common.write_stamped(path, want, out)
  return out


def _predictions(workdir: str, models: list[tuple[str, ml_collections.ConfigDict]]
                 ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
  """({task: {model display name: int[Q, R]}}, {task: int[Q] targets}) from each model's
  saved `predictions_<task>.npz` (a model without that file is left out)."""
  predictions, targets = {}, {}
  for task, _ in TASKS:
    predictions[task] = {}
    for label, _ in models:
      f = os.path.join(common.model_dir(workdir, label), f"predictions_{task}.npz")
      if os.path.exists(f):
        z = np.load(f)
        predictions[task][common.display_name(label)] = z["items"]
        targets[task] = z["targets"]
  return predictions, targets
