"""The main job: prepare -> ids -> train -> eval (+ baselines) -> analyze -> report.

`run(config, workdir, mode)` is what `python -m genret_jax.main` calls.
Every step writes under `workdir` and is skipped when its output exists for
the same settings (prepare: the data config hash in the manifest; ids: a
stamp of the ids config + prepared content; train: resumes from / stops at
the latest checkpoint; eval, baselines, analyze: stamped JSON files), so an
interrupted run continues where it stopped and a rerun is cheap. Reused
output is verified first (genret_jax.cache): prepared files and identifiers
against their recorded size + sha256, checkpoints likewise (a damaged latest
one falls back to the previous good one), JSON caches by parsing; damaged
output is redone, or the run stops with one line naming the file. With a
`table` block (configs/paper/*), `run` runs every row of the table as such a
job in its own sub-workdir, then writes the table (see `tables`).

Layout of a job's workdir:
  prepared/, ids/                 shared by all models
  models/<label>/                 checkpoints, TensorBoard events, eval.json,
                                  predictions_<task>.npz, per_query.npz
  baselines.json, analysis.json   stamped caches
  results.json, results.md        the report; plots/*.png the H1/H2 plots
  jax_cache/                      XLA compilation cache (config.jax_cache_dir)
"""

from __future__ import annotations

import time

import ml_collections

from genret_jax import cache
from genret_jax import config as config_lib
from genret_jax.pipeline import analyze, baselines, common, generative, report, validation

MODES = ("prepare", "ids", "train", "eval", "analyze", "report", "all")


def run_job(config: ml_collections.ConfigDict, workdir: str, mode: str = "all") -> dict:
  """One dataset / seed: the steps of `mode`; returns {'results', 'analysis', 'times'}."""
  steps = MODES[:-1] if mode == "all" else (mode,)
  ctx = generative.Context(config, workdir)
  entries = [config_lib.model_config(config, e) for e in config_lib.model_entries(config)]
  times: dict[str, float] = {}
  results: dict = {}
  analysis: dict = {}

  def timed(name, fn, *args):
    t0 = time.time()
    value = fn(*args)
    times[name] = times.get(name, 0.0) + time.time() - t0
    return value

  if "prepare" in steps:
    timed("prepare", generative.run_prepare, config, workdir)
  else:   # reused as it is: its files must still match the manifest
    generative.check_prepared(workdir)
  if "ids" in steps:
    ctx._ids = timed("ids", generative.run_ids, config, workdir)  # pylint: disable=protected-access
  # epochs -> train steps needs the registered tasks (the prepared data and ids).
  models = [(label, validation.schedule(ctx, m) if steps != ("prepare",) and
             steps != ("ids",) else m) for label, m in entries]
  if "train" in steps:
    for label, mconfig in models:
      timed(f"train/{label}", generative.run_train, ctx, label, mconfig)
  need_eval = any(s in steps for s in ("eval", "analyze", "report"))
  if need_eval:
    for label, mconfig in models:
      results[common.display_name(label)] = timed(f"eval/{label}", generative.run_eval, ctx,
                                                  label, mconfig)
    results.update(timed("baselines", baselines.run_baselines, config, workdir))
    common.barrier("genret_eval")  # process 0 wrote the predictions the analyses read
  if any(s in steps for s in ("analyze", "report")):
    stamps = {label: generative.eval_stamp(workdir, label) for label, _ in models}
    analysis = timed("analyze", analyze.run_analyze, ctx, models, stamps)
  if "report" in steps:
    text = report.write_report(workdir, results, analysis, title=str(config.name))
    common.log(text)
  common.log("step times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
  return {"results": results, "analysis": analysis, "times": times}


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> None:
  """Applies `config.scale`, validates (every block, and that `workdir` is a folder
  we can write), then runs a job or a paper table."""
  config = config_lib.resolve(config)
  if common.is_writer():
    cache.ensure_folder(workdir, "the workdir")
  if config.table.kind:
    from genret_jax.pipeline import tables  # pylint: disable=g-import-not-at-top
    tables.run_table(config, workdir, mode)
  else:
    run_job(config, workdir, mode)
