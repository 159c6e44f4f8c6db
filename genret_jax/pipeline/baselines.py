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

from genret_jax.errors import ConfigError
from genret_jax.pipeline import common

BASELINES = ("pop", "bm25", "sasrec")
TASKS = {"rec": 0, "search": 1}   # task -> behaviour (REC, SEARCH)


def names(config: ml_collections.ConfigDict) -> list[str]:
  out = common.split_list(config.baselines)
  bad = [b for b in out if b not in BASELINES]
  if bad:
    raise ConfigError("baselines", f"{bad} not in {BASELINES}")
  return out


def candidates_of(ds, events: np.ndarray) -> np.ndarray:
  """int32[Q, C] prepared candidates (target first, then the negatives) of the
  VALID/TEST event indices `events` (int[Q]) of a PreparedDataset."""
  events = np.asarray(events, np.int64)
  pos = np.minimum(np.searchsorted(ds.eval_events, events), max(ds.eval_events.size - 1, 0))
  if events.size and (not ds.eval_events.size or (ds.eval_events[pos] != events).any()):
    raise ValueError("candidates_of: only VALID/TEST events have candidates")
  return np.concatenate([ds.events.item[events, None], ds.negatives[pos]], 1).astype(np.int32)


def _indexable(catalog) -> bool:
  """Whether some item text has a word BM25 indexes (else BM25 is skipped, with a warning)."""
  from genret_jax.baselines import bm25  # pylint: disable=g-import-not-at-top
  if any(bm25._tokenize(catalog.texts())):  # pylint: disable=protected-access
    return True
  common.log("warning: BM25 baseline skipped: no item text has an indexable word")
  return False


def run_baselines(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """{model: {task: {metric: value}}} of `config.baselines` (stamped cache)."""
  from genret_jax.data import prepared  # pylint: disable=g-import-not-at-top
  from genret_jax.data.splits import TEST  # pylint: disable=g-import-not-at-top
  from genret_jax.decoding import config as decoding_config  # pylint: disable=g-import-not-at-top
  wanted = names(config)
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
  ev, split, n = ds.events, ds.split, ds.catalog.num_items
  test = {t: np.flatnonzero((split == TEST) & (ev.behaviour == b)) for t, b in TASKS.items()}
  # The same query subset as the generative models (eval.max_queries).
  rows = {t: decoding_config.query_subset(idx.size, config.eval) for t, idx in test.items()}
  test = {t: idx[rows[t]] for t, idx in test.items()}
  # Sampled protocol: each TEST event's prepared candidates (int[Q, 100], target first).
  cands = {t: candidates_of(ds, idx) for t, idx in test.items()} if sampled else {}
  out: dict[str, dict] = {}

  def metrics(task: str, score) -> dict[str, float]:
    """One baseline's metrics on `task` in the protocols of eval.protocol.

    `score(candidates)` -> {metric: value}: over the catalog when candidates is
    None, else over int[Q, C] candidates (reported with the 'sampled_' prefix).
    """
    m = {k: float(v) for k, v in score(None).items()} if full else {}
    if sampled:
      m.update({"sampled_" + k: float(v) for k, v in score(cands[task]).items()})
    return m

  if "pop" in wanted:
    from genret_jax.analysis import h1  # pylint: disable=g-import-not-at-top
    from genret_jax.baselines import popularity  # pylint: disable=g-import-not-at-top
    counts = h1.train_popularity(ev, split, n).astype(np.float64)
    for name, row in (("Pop_R", 0), ("Pop_S", 1)):
      out[name] = {}
      for task, idx in test.items():
        if idx.size:
          out[name][task] = metrics(task, lambda c, row=row, idx=idx: popularity.evaluate(
              counts[row], ev.item[idx], ks, candidates=c))
  bm25_ok = "bm25" in wanted and test["search"].size and _indexable(ds.catalog)
  if bm25_ok:
    from genret_jax.baselines import bm25  # pylint: disable=g-import-not-at-top
    idx = test["search"]
    out["BM25"] = {"search": metrics("search", lambda c: bm25.bm25_baseline(
        ds.catalog, list(ev.query[idx]), ev.item[idx], ks, candidates=c,
        seed=int(config.seed)))}
  if "sasrec" in wanted and test["rec"].size:
    from genret_jax.baselines import sasrec  # pylint: disable=g-import-not-at-top
    s = config.ids.sasrec
    res = sasrec.train_sasrec(ev, split, n, dim=int(s.dim), num_layers=int(s.num_layers),
                              num_heads=int(s.num_heads), max_len=int(s.max_len),
                              dropout=float(s.dropout), loss=str(s.loss), epochs=int(s.epochs),
                              batch_size=int(s.batch_size), learning_rate=float(s.learning_rate),
                              eval_every=int(s.eval_every), ks=ks, seed=int(config.seed),
                              test_rows=rows["rec"], test_candidates=cands.get("rec"))
    out["SASRec"] = {"rec": metrics("rec", lambda c: res.test_metrics if c is None
                                    else res.test_sampled_metrics)}
  for name, tasks in out.items():
    for t, m in tasks.items():
      common.log(f"baseline {name} {t}: " + ", ".join(
          f"{k}={v:.4f}" for k, v in m.items() if k.startswith(
              ("recall@", "ndcg@", "sampled_hr@", "sampled_ndcg@"))))
  if common.is_writer():
    common.write_stamped(path, want, out)
  return out
