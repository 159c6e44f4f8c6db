"""Baselines on the TEST events of each task, written to `{workdir}/baselines.json`.

  Pop_R / Pop_S: items ranked by their TRAIN rec / search counts, each scored
    on both tasks.
  BM25: bm25s-style BM25 over the item texts, search task.
  SASRec: trained on TRAIN rec events (settings of `ids.sasrec`, selected on
    VALID), rec task.

Protocols follow `eval.protocol`, as for the generative models: `full` ranks
the target against the whole catalog ('recall@K', 'hr@K', 'ndcg@K', 'mrr');
`sampled` against its event's 1 + 99 prepared candidates (target + the
negatives of genret_jax.data.negatives, the ones the generative models decode
over), the same names prefixed 'sampled_'; `both` writes both. Ties count as
the expectation over the tie group's orders in either protocol.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from genret_jax import config as config_lib
from genret_jax.baselines.registry import BASELINES, BaselineInputs
from genret_jax.data import prepared
from genret_jax.data.splits import TEST
from genret_jax.decoding import config as decoding_config
from genret_jax.errors import ConfigError
from genret_jax.pipeline import common


TASKS = {"rec": 0, "search": 1}   # task -> behaviour (REC, SEARCH)


def candidates_of(ds, events: np.ndarray) -> np.ndarray:
  """int32[Q, C] prepared candidates (target first, then the negatives) of the
  VALID/TEST event indices `events` (int[Q]) of a PreparedDataset."""
  events = np.asarray(events, np.int64)
  pos = np.minimum(np.searchsorted(ds.eval_events, events), max(ds.eval_events.size - 1, 0))
  if events.size and (not ds.eval_events.size or (ds.eval_events[pos] != events).any()):
    raise ValueError("candidates_of: only VALID/TEST events have candidates")
  return np.concatenate([ds.events.item[events, None], ds.negatives[pos]], 1).astype(np.int32)


def run_baselines(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """{model: {task: {metric: value}}} of `config.baselines` (stamped cache)."""
  wanted = config_lib.split_list(config.baselines)   # names checked by config.validate
  if not wanted:
    return {}
  manifest = prepared.read_manifest(os.path.join(workdir, "prepared"))
  if manifest is None:
    raise ConfigError("workdir", f"{workdir}/prepared holds no prepared dataset")
  ks = tuple(int(k) for k in config.eval.ks)
  protocol = str(config.eval.protocol)
  full, sampled = protocol in ("full", "both"), protocol in ("sampled", "both")
  want = common.stamp(wanted, ks, config.ids.sasrec, config.seed, manifest.get("content_hash"),
                      int(config.eval.max_queries), int(config.eval.queries_seed), protocol)
  path = os.path.join(workdir, "baselines.json")
  cached = common.read_stamped(path, want)
  if cached is not None:
    common.log(f"baselines: reusing {path}")
    return cached
  ds = prepared.load(os.path.join(workdir, "prepared"))
  ev, split = ds.events, ds.split
  test = {t: np.flatnonzero((split == TEST) & (ev.behaviour == b)) for t, b in TASKS.items()}
  # The same query subset as the generative models (eval.max_queries).
  rows = {t: decoding_config.query_subset(idx.size, config.eval) for t, idx in test.items()}
  test = {t: idx[rows[t]] for t, idx in test.items()}
  # Sampled protocol: each TEST event's prepared candidates (int[Q, 100], target first).
  cands = {t: candidates_of(ds, idx) for t, idx in test.items()} if sampled else {}
  inputs = BaselineInputs(config, ds, test, rows, ks, full, cands)
  out: dict[str, dict] = {}
  for name in wanted:
    out.update(BASELINES[name](inputs))
  for name, tasks in out.items():
    for t, m in tasks.items():
      common.log(f"baseline {name} {t}: " + ", ".join(
          f"{k}={v:.4f}" for k, v in m.items() if k.startswith(
              ("recall@", "ndcg@", "sampled_hr@", "sampled_ndcg@"))))
  if common.is_writer():
    common.write_stamped(path, want, out)
  return out
