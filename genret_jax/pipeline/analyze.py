"""H1 / H2 over the trained models: `{workdir}/analysis.json` and `{workdir}/plots/*.png`.

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
from genret_jax.analysis import h1, h2
from genret_jax.data import prepared
from genret_jax.data.stats import train_popularity
from genret_jax.pipeline import common, steps


def run_analyze(ctx: steps.Context, models: list[tuple[str, ml_collections.ConfigDict]],
                eval_stamps: dict[str, str]) -> dict:
  """{'h1': {task: h1_analysis result}, 'h2': h2_analysis result} (stamped cache)."""
  config, workdir = ctx.config, ctx.workdir
  wanted = config_lib.split_list(config.analyses)   # names checked by config.validate
  if not wanted or not models:
    return {}
  want = common.stamp(wanted, config.analysis, sorted(eval_stamps.items()))
  path = os.path.join(workdir, "analysis.json")
  plots = os.path.join(workdir, "plots")
  cached = common.read_stamped(path, want)
  if cached is not None:
    common.log(f"analyze: reusing {path}")
    return cached
  ds = prepared.load(steps.prepared_path(workdir))
  n = ds.catalog.num_items
  pop = train_popularity(ds.events, ds.split, n)
  out: dict = {}
  writer = common.is_writer()
  if writer:
    os.makedirs(plots, exist_ok=True)
  if "h1" in wanted:
    out["h1"] = {}
    for task, row in (("rec", 0), ("search", 1)):
      preds, targets = {}, None
      for label, _ in models:
        f = os.path.join(common.model_dir(workdir, label), f"predictions_{task}.npz")
        if os.path.exists(f):
          z = np.load(f)
          preds[common.display_name(label)] = z["items"]
          targets = z["targets"]
      if preds:
        out["h1"][task] = h1.h1_analysis(
            pop[row], preds, targets, top_k=int(config.analysis.h1_top_k),
            plot_path=os.path.join(plots, f"h1_{task}.png") if writer else None,
            title=f"{config.data.source} / {task}")
        common.log(f"H1 {task}: " + ", ".join(
            f"{m} KL={r['kl']:.3f}" for m, r in out["h1"][task]["models"].items()))
  if "h2" in wanted:
    emb = {}
    for label, mconfig in models:
      rows = steps.id_embeddings(ctx, label, mconfig)
      emb[common.display_name(label)] = rows["rec"]
    user, item = h2.train_sequences(ds.events, ds.split)
    out["h2"] = h2.h2_analysis(
        emb, ds.catalog.texts(), user, item, k=int(config.analysis.h2_k),
        popularity=pop[0].astype(np.float64),
        plot_path=os.path.join(plots, "h2_tsne.png") if writer else None,
        tsne_items=int(config.analysis.tsne_items), tsne_iter=int(config.analysis.tsne_iter),
        seed=int(config.seed), title=str(config.data.source))
    common.log("H2 overlap@k content / co-occurrence: " + ", ".join(
        f"{m} {r['content']['overlap']:.3f}/{r['cooccurrence']['overlap']:.3f}"
        for m, r in out["h2"]["models"].items()))
  if writer:
    common.write_stamped(path, want, out)
  return out
