"""Baselines by name (`config.baselines`): name -> run(BaselineInputs) -> results.

    BASELINES[name](inputs) -> {display name: {task: {metric: value}}}

Every baseline sees the same TEST queries as the generative models and reports
in `eval.protocol` through `inputs.metrics`. Adding a baseline is a module with
a `run` function plus one line in BASELINES (docs/analysis.md, "How to add a
baseline").
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import ml_collections
import numpy as np

from genret_jax.baselines import popularity, sasrec
from genret_jax.cache import warn
from genret_jax.data.stats import train_popularity

Results = dict[str, dict[str, dict[str, float]]]
Scorer = Callable[[np.ndarray | None], Mapping[str, float]]


@dataclasses.dataclass(frozen=True)
class BaselineInputs:
  """What a baseline is evaluated on.

  Attributes:
    config: the job config (`seed`, `ids.sasrec`, ...).
    dataset: the PreparedDataset (catalog, events, split, negatives).
    test: task ('rec' | 'search') -> int[Q] TEST event indices (the eval.max_queries subset).
    rows: task -> int[Q] positions of those events among the task's TEST events.
    ks: the cut-offs of eval.ks.
    full: whether eval.protocol ranks the whole catalog ('full' or 'both').
    candidates: task -> int[Q, 1 + 99] prepared candidates (target first) when the
      protocol is 'sampled' or 'both', else empty.
  """
  config: ml_collections.ConfigDict
  dataset: object
  test: dict[str, np.ndarray]
  rows: dict[str, np.ndarray]
  ks: tuple[int, ...]
  full: bool
  candidates: dict[str, np.ndarray]

  def metrics(self, task: str, score: Scorer) -> dict[str, float]:
    """One baseline's metrics on `task` in eval.protocol: `score(None)` over the
    catalog, `score(int[Q, C] candidates)` reported with the 'sampled_' prefix."""
    m = {k: float(v) for k, v in score(None).items()} if self.full else {}
    if self.candidates:
      m.update({"sampled_" + k: float(v) for k, v in score(self.candidates[task]).items()})
    return m


def run_popularity(inputs: BaselineInputs) -> Results:
  """Pop_R / Pop_S: items ranked by TRAIN rec / search counts, scored on both tasks."""
  ds = inputs.dataset
  counts = train_popularity(ds.events, ds.split, ds.catalog.num_items).astype(np.float64)
  return {name: {task: inputs.metrics(task, lambda c, row=row, idx=idx: popularity.evaluate(
      counts[row], ds.events.item[idx], inputs.ks, candidates=c))
                 for task, idx in inputs.test.items() if idx.size}
          for name, row in (("Pop_R", 0), ("Pop_S", 1))}


def run_bm25(inputs: BaselineInputs) -> Results:
  """BM25 over the item texts, search task (skipped with a warning when no item
  text has a word it indexes)."""
  # bm25s runs a JAX computation when imported, which would start the XLA backend
  # before jax.distributed.initialize in a multi-process job: imported when used.
  from genret_jax.baselines import bm25  # pylint: disable=g-import-not-at-top
  ds, idx = inputs.dataset, inputs.test["search"]
  if not idx.size:
    return {}
  if not bm25.indexable(ds.catalog.texts()):
    warn("BM25 baseline skipped: no item text has an indexable word")
    return {}
  return {"BM25": {"search": inputs.metrics("search", lambda c: bm25.bm25_baseline(
      ds.catalog, list(ds.events.query[idx]), ds.events.item[idx], inputs.ks, candidates=c,
      seed=int(inputs.config.seed)))}}


def run_sasrec(inputs: BaselineInputs) -> Results:
  """SASRec trained on TRAIN rec events (settings of `ids.sasrec`, selected on VALID)."""
  if not inputs.test["rec"].size:
    return {}
  ds, s = inputs.dataset, inputs.config.ids.sasrec
  # Seeded by the job's `seed` (a table's seeds vary it); the IDs' SASRec by ids.sasrec.seed.
  res = sasrec.train_from_config(
      ds.events, ds.split, ds.catalog.num_items, s, seed=int(inputs.config.seed), ks=inputs.ks,
      test_rows=inputs.rows["rec"], test_candidates=inputs.candidates.get("rec"),
      verbose=True)
  print(f"sasrec: best VALID at epoch {res.best_epoch} of {res.epochs_trained} trained")
  return {"SASRec": {"rec": inputs.metrics("rec", lambda c: res.test_metrics if c is None
                                           else res.test_sampled_metrics)}}


BASELINES: dict[str, Callable[[BaselineInputs], Results]] = {
    "pop": run_popularity,
    "bm25": run_bm25,
    "sasrec": run_sasrec,
}
