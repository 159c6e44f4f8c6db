"""One job: the steps of `mode` on one dataset / seed in one workdir (see the
package docstring for the steps and the workdir layout)."""

from __future__ import annotations

import contextlib
import time

import ml_collections

from genret_jax import config as config_lib
from genret_jax.pipeline import analyze, baselines, common, report, steps, validation

MODES = ("prepare", "ids", "train", "eval", "analyze", "report", "all")


def run_job(config: ml_collections.ConfigDict, workdir: str, mode: str = "all") -> dict:
  """One dataset / seed: the steps of `mode`; returns {'results', 'analysis', 'times'}."""
  todo = MODES[:-1] if mode == "all" else (mode,)
  ctx = steps.Context(config, workdir)
  entries = [config_lib.model_config(config, e) for e in config_lib.model_entries(config)]
  times: dict[str, float] = {}
  results: dict = {}
  analysis: dict = {}

  @contextlib.contextmanager
  def timed(name: str):
    t0 = time.time()
    yield
    times[name] = times.get(name, 0.0) + time.time() - t0

  if "prepare" in todo:
    with timed("prepare"):
      steps.run_prepare(config, workdir)
  else:   # reused as it is: its files must still match the manifest
    steps.check_prepared(workdir)
  if "ids" in todo:
    with timed("ids"):
      ctx.set_ids(steps.run_ids(config, workdir))
  # epochs -> train steps needs the registered tasks (the prepared data and ids).
  models = [(label, validation.schedule(ctx, m) if todo != ("prepare",) and
             todo != ("ids",) else m) for label, m in entries]
  if "train" in todo:
    for label, mconfig in models:
      with timed(f"train/{label}"):
        steps.run_train(ctx, label, mconfig)
  need_eval = any(s in todo for s in ("eval", "analyze", "report"))
  if need_eval:
    for label, mconfig in models:
      with timed(f"eval/{label}"):
        results[common.display_name(label)] = steps.run_eval(ctx, label, mconfig)
    with timed("baselines"):
      results.update(baselines.run_baselines(config, workdir))
    common.barrier("genret_eval")  # process 0 wrote the predictions the analyses read
  if any(s in todo for s in ("analyze", "report")):
    stamps = {label: steps.eval_stamp(workdir, label) for label, _ in models}
    with timed("analyze"):
      analysis = analyze.run_analyze(ctx, models, stamps)
  if "report" in todo:
    text = report.write_report(workdir, results, analysis, title=str(config.name))
    common.log(text)
  common.log("step times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
  return {"results": results, "analysis": analysis, "times": times}
