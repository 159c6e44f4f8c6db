"""Paper tables: every row of a table (datasets x seeds x variants / knob values) as a job.

Layout under the workdir:
  <dataset>/data-<hash>/prepared             one prepared dataset per data block
  <dataset>/<variant>/seed<s>/               a job (genret_jax.pipeline.job.run_job),
                                             its `prepared` a link to the shared one
  table.md, table.json                       kind=table (genret_jax.report.write_paper_table)
  sweep_<task>_<metric>.png / .json          kind=sweep (genret_jax.report.write_sweep)

Seed s sets `seed`, `train.seed`, `ids.seed` and `ids.sasrec.seed`; the data
(split, negatives) is the same in every seed, so runs pair by seed.
"""

from __future__ import annotations

import os

import ml_collections

from genret_jax import config as config_lib
from genret_jax import report
from genret_jax.errors import ConfigError
from genret_jax.pipeline import common, job, steps


# dataset name -> (data.source, folder under table.data_root or '').
DATASETS = {"simulated": ("simulated", ""), "ml-latest-small": ("movielens", "ml-latest-small"),
            "amazon-beauty": ("amazon", "amazon-beauty")}


def dataset_config(config: ml_collections.ConfigDict, dataset: str) -> ml_collections.ConfigDict:
  """`config` with its data block pointing at `dataset` (unlocked copy)."""
  if dataset not in DATASETS:
    raise ConfigError("table.datasets", f"{dataset!r} is not one of {sorted(DATASETS)}")
  source, folder = DATASETS[dataset]
  c = ml_collections.ConfigDict(config.to_dict())
  c.data.source = source
  if folder:
    path = os.path.join(config_lib.data_root(config), folder)
    if not os.path.isdir(path):
      raise ConfigError("table.data_root", f"{path} does not exist (dataset {dataset})")
    c.data.path = path
  return c


def seed_config(c: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(c.to_dict())
  c.seed = seed
  c.train.seed = seed
  c.ids.seed = seed
  c.ids.sasrec.seed = seed
  return c


def parse_variants(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
  """'name=key=value;key=value,...' -> [(name, [(key, value)])]; '' -> [('', [])]."""
  out = []
  for entry in [e.strip() for e in str(text).split(",") if e.strip()]:
    name, _, rest = entry.partition("=")
    overrides = []
    for item in [i.strip() for i in rest.split(";") if i.strip()]:
      if "=" not in item:
        raise ConfigError("table.variants", f"{entry!r}: {item!r} is not key=value")
      k, v = item.split("=", 1)
      overrides.append((k.strip(), v.strip()))
    out.append((name.strip(), overrides))
  return out or [("", [])]


def _job(config, workdir: str, dataset: str, sub: str, seed: int, mode: str,
         overrides: list[tuple[str, str]], where: str) -> dict:
  c = seed_config(dataset_config(config, dataset), seed)
  for k, v in overrides:
    config_lib.set_dotted(c, k, v.replace("+", ","), where)
  c.table.kind = ""
  c.lock()
  config_lib.validate(c)
  # Seeds and most variants share the data block: prepare each distinct one
  # once in <dataset>/data-<hash>/prepared and link it into the jobs.
  shared = steps.run_prepare(
      c, os.path.join(workdir, dataset, "data-" + common.stamp(c.data)[:12]))
  jobdir = os.path.join(workdir, dataset, sub, f"seed{seed}")
  link = os.path.join(jobdir, "prepared")
  if common.is_writer() and not os.path.lexists(link):
    os.makedirs(jobdir, exist_ok=True)
    os.symlink(os.path.relpath(shared, jobdir), link)
  common.barrier("genret_table_link")
  common.log(f"== {dataset} / {sub} / seed {seed}")
  return job.run_job(c, jobdir, mode)["results"]


def _metrics(config) -> list[tuple[str, str]]:
  out = []
  for m in config_lib.split_list(config.table.metrics):
    task, _, metric = m.partition("/")
    if not metric:
      raise ConfigError("table.metrics", f"{m!r} is not task/metric")
    out.append((task, metric))
  return out


BASELINE_NAMES = ("Pop_R", "Pop_S", "BM25", "SASRec")


def _rows(results: dict, metrics, suffix: str) -> dict:
  """{model: {task/metric: value}} of one job's results; generative models'
  names get the variant `suffix`, baselines' do not."""
  out = {}
  for model, tasks in results.items():
    name = model if model in BASELINE_NAMES else f"{model} {suffix}".strip()
    cells = {f"{t}/{m}": tasks[t][m] for t, m in metrics if t in tasks and m in tasks[t]}
    if cells:
      out[name] = cells
  return out


def run_table(config: ml_collections.ConfigDict, workdir: str, mode: str) -> None:
  """Runs every row job of `config.table`, then writes the table or the sweep plots."""
  t = config.table
  datasets = config_lib.split_list(t.datasets)
  for d in datasets:
    dataset_config(config, d)  # fail before any work
  metrics = _metrics(config)
  seeds = range(int(t.seeds))
  if t.kind == "sweep":
    values = config_lib.split_list(t.knob_values)
    sweeps: dict[str, dict] = {f"{tk}/{m}": {} for tk, m in metrics}
    for d in datasets:
      for v in values:
        for s in seeds:
          res = _job(config, workdir, d, f"{t.knob}={v}", s, mode, [(t.knob, v)], "table.knob_values")
          for model, cells in _rows(res, metrics, "").items():
            for key, val in cells.items():
              sweeps[key].setdefault(model, {}).setdefault(float(v), []).append(val)
    if mode in ("all", "report") and common.is_writer():
      for key, sweep in sweeps.items():
        if sweep:
          png, _ = report.write_sweep(sweep, os.path.join(workdir, "sweep_" + key.replace("/", "_")),
                                      knob=t.knob, metric=key, title=t.title)
          common.log(f"wrote {png}")
    return
  per_seed = []
  for s in seeds:
    row: dict = {}
    for d in datasets:
      for name, overrides in parse_variants(t.variants):
        res = _job(config, workdir, d, name or "base", s, mode, overrides, "table.variants")
        for model, cells in _rows(res, metrics, "" if name in ("", "base") else name).items():
          row.setdefault(model, {})[d] = cells
    per_seed.append(row)
  if mode not in ("all", "report") or not common.is_writer():
    return
  collected = report.collect_seeds(per_seed)
  refs = {}
  for item in config_lib.split_list(t.reference):
    task, _, model = item.partition(":")
    refs[task] = model
  compare = [m for m in config_lib.split_list(t.compare) if m in collected]
  compare = [m for m in compare if any(r in collected for r in refs.values())]
  md, _ = report.write_paper_table(collected, os.path.join(workdir, "table"), title=t.title,
                                   reference=refs, compare=compare)
  common.log(open(md).read())
