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

import ml_collections

from genret_jax import cache
from genret_jax import config as config_lib
from genret_jax.pipeline import common, tables
from genret_jax.pipeline.job import MODES, run_job

__all__ = ["MODES", "run", "run_job"]


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> None:
  """Applies `config.scale`, validates (every block, and that `workdir` is a folder
  we can write), then runs a job or a paper table."""
  config = config_lib.resolve(config)
  if common.is_writer():
    cache.ensure_folder(workdir, "the workdir")
  if config.table.kind:
    tables.run_table(config, workdir, mode)
  else:
    run_job(config, workdir, mode)
