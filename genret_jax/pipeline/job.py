"""One job: the steps of `mode` on one dataset / seed in one workdir (see the
package docstring for the steps and the workdir layout)."""

from __future__ import annotations

import time

import ml_collections

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
    ctx.set_ids(timed("ids", generative.run_ids, config, workdir))
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
