"""Baselines in the sampled 1 + 99 protocol: exact hand-computed metrics with ties, the
SASRec candidate ranking, and results.json names matching the generative models'."""

import json
import os

import numpy as np
import pytest

from genret_jax.data import stats as data_stats
from genret_jax import config as config_lib
from genret_jax.baselines import popularity, ranking, sasrec, sequences
from genret_jax.data.splits import TEST
from genret_jax.errors import ConfigError
from genret_jax.evaluation import metrics as metrics_lib
from tests.conftest import REPO, set_keys

L3 = np.log2(3.0)

# TRAIN counts of 10 items: three-way tie at 7, two-way at 4, three-way at 0.
COUNTS = np.array([9, 7, 7, 7, 4, 4, 2, 0, 0, 0], np.float64)
TARGETS = np.array([4, 1, 7])
CANDIDATES = np.array([
    [4, 0, 2, 5, 7],      # scores 4 | 9 7 4 0: 2 above, tied with item 5 -> positions 2, 3
    [1, 2, 3, 9, 8],      # scores 7 | 7 7 0 0: 0 above, tied with 2 and 3 -> positions 0, 1, 2
    [7, 8, 9, 6, 0],      # scores 0 | 0 0 2 9: 2 above, tied with 8 and 9 -> positions 2, 3, 4
])
# Per query, by hand (each position of the tie group has probability 1 / group size):
#   hr@1 0, 1/3, 0;  hr@2 0, 2/3, 0;  hr@3 1/2, 1, 1/3
#   ndcg@2 0, (1 + 1/log2 3) / 3, 0;  ndcg@3 (1/2)(1/2), (1 + 1/log2 3 + 1/2) / 3, (1/3)(1/2)
#   mrr (1/3 + 1/4) / 2, (1 + 1/2 + 1/3) / 3, (1/3 + 1/4 + 1/5) / 3
EXPECTED = {
    "hr@1": 1 / 9, "hr@2": 2 / 9, "hr@3": (1 / 2 + 1 + 1 / 3) / 3,
    "ndcg@1": 1 / 9, "ndcg@2": (1 + 1 / L3) / 9,
    "ndcg@3": (1 / 4 + (1.5 + 1 / L3) / 3 + 1 / 6) / 3,
    "mrr": (7 / 24 + 11 / 18 + 47 / 180) / 3,
}


def test_popularity_sampled_protocol_exact_with_ties():
  m = popularity.evaluate(COUNTS, TARGETS, (1, 2, 3), candidates=CANDIDATES)
  for name, value in EXPECTED.items():
    assert m[name] == pytest.approx(value, abs=1e-12), name
  for k in (1, 2, 3):
    assert m[f"recall@{k}"] == m[f"hr@{k}"]                  # one target per query
  # The candidates' order does not matter (the target need not come first) ...
  shuffled = np.stack([np.random.default_rng(q).permutation(r) for q, r in enumerate(CANDIDATES)])
  assert popularity.evaluate(COUNTS, TARGETS, (1, 2, 3), candidates=shuffled) == m
  # ... and it is the tie-group rule of evaluation.metrics on the ranked candidate lists.
  order = np.argsort(-COUNTS[CANDIDATES], axis=1, kind="stable")
  items = np.take_along_axis(CANDIDATES, order, 1)
  ref = metrics_lib.ranking_metrics(items, TARGETS, (1, 2, 3), ranks=-COUNTS[items])
  assert m == pytest.approx(ref, abs=1e-12)
  # The full catalog for contrast: positions 4-5, 1-3 and 7-9 of 10 -> hr@3 (0 + 2/3 + 0) / 3.
  assert popularity.evaluate(COUNTS, TARGETS, (3,))["hr@3"] == pytest.approx((0 + 2 / 3 + 0) / 3)


def test_candidates_must_hold_their_target_once():
  with pytest.raises(ValueError, match="query 0: its target 4 is 0 times"):
    popularity.evaluate(COUNTS, TARGETS, (1,), candidates=CANDIDATES[:, 1:])
  with pytest.raises(ValueError, match="query 1: its target 1 is 2 times"):
    popularity.evaluate(COUNTS, TARGETS, (1,), candidates=np.array(
        [[4, 0], [1, 1], [7, 8]]))
  with pytest.raises(ValueError, match=r"item indices in \[0, 10\)"):
    popularity.evaluate(COUNTS, TARGETS, (1,), candidates=CANDIDATES + 5)


def test_candidate_rank_fn_equals_numpy_with_ties_and_padding():
  rng = np.random.default_rng(0)
  table = rng.integers(-2, 3, size=(30, 3)).astype(np.float32)   # small ints: many ties
  queries = rng.integers(-2, 3, size=(11, 3)).astype(np.float32)
  targets = rng.integers(30, size=11).astype(np.int32)
  cands = np.stack([np.concatenate([[t], rng.choice(np.delete(np.arange(30), t), 7,
                                                      replace=False)]) for t in targets])
  fn = ranking.make_candidate_rank_fn(lambda p, x: x @ p.T)
  above, ties = ranking.batched_ranks(fn, table, queries, targets, batch_size=4,
                                      candidates=cands)
  s = queries @ table.T
  ref_above, ref_ties = ranking.candidate_ranks(np.take_along_axis(s, cands, 1),
                                                s[np.arange(11), targets])
  np.testing.assert_array_equal(above, ref_above)
  np.testing.assert_array_equal(ties, ref_ties)
  assert ref_ties.sum() > 0 and (ref_above <= 7).all()


def test_sasrec_scores_the_same_candidates():
  from genret_jax.data.schema import REC, Events  # pylint: disable=g-import-not-at-top
  from genret_jax.data.splits import leave_one_out  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  rows = [(u, int((s + t) % 40), t) for u, s in enumerate(rng.integers(40, size=30))
          for t in range(8)]
  u, i, t = (np.array(c) for c in zip(*rows))
  ev = Events(u.astype(np.int32), i.astype(np.int32), t.astype(np.int64),
              np.full(len(rows), REC, np.int8), np.full(len(rows), "", object),
              np.array([f"u{k}" for k in range(30)]))
  split = leave_one_out(ev)
  x, y = sequences.eval_examples(ev, split, TEST, 8)
  cands = np.stack([np.concatenate([[t], rng.choice(np.delete(np.arange(40), t), 9,
                                                      replace=False)]) for t in y])
  kwargs = dict(dim=8, max_len=8, epochs=2, eval_every=1, batch_size=16, dropout=0.0,
                ks=(1, 5), seed=0)
  res = sasrec.train_sasrec(ev, split, 40, test_candidates=cands, **kwargs)
  model = sasrec.SASRec(40, 8, 2, 1, 8, 0.0)
  s = np.asarray(model.apply(res.params, x, method=sasrec.SASRec.scores))
  above, ties = ranking.candidate_ranks(np.take_along_axis(s, cands, 1), s[np.arange(len(y)), y])
  ref = ranking.metrics_from_ranks(above, (1, 5), ties)
  assert res.test_sampled_metrics == pytest.approx(ref, abs=1e-9)
  assert set(res.test_sampled_metrics) == set(res.test_metrics)
  with pytest.raises(ValueError, match="its target"):     # checked before training
    sasrec.train_sasrec(ev, split, 40, test_candidates=cands[::-1], **kwargs)


@pytest.fixture(scope="module")
def prepared_job(tmp_path_factory):
  from genret_jax.pipeline import steps  # pylint: disable=g-import-not-at-top
  c = config_lib.load_sibling(str(REPO / "x"), "configs/gensar.py").get_config()
  c.scale = "smoke"
  c.eval.ks = (1, 5, 10)
  workdir = str(tmp_path_factory.mktemp("baselines"))
  steps.run_prepare(config_lib.resolve(c), workdir)
  return c, workdir


def _resolved(c, **overrides):
  """A resolved copy of the unresolved config `c` with dotted-key overrides."""
  return config_lib.resolve(set_keys(type(c)(c.to_dict()), **overrides))


@pytest.mark.parametrize("protocol", ["both", "sampled", "full"])
def test_run_baselines_writes_sampled_metrics_like_the_generative_models(prepared_job,
                                                                         protocol):
  from genret_jax.data import prepared  # pylint: disable=g-import-not-at-top
  from genret_jax.pipeline import baselines  # pylint: disable=g-import-not-at-top
  from genret_jax.baselines import bm25  # pylint: disable=g-import-not-at-top
  c, workdir = prepared_job
  names = "pop,bm25,sasrec" if protocol == "both" else "pop,bm25"
  config = _resolved(c, **{"eval.protocol": protocol, "baselines": names})
  out = baselines.run_baselines(config, workdir)
  assert json.load(open(os.path.join(workdir, "baselines.json")))["value"] == \
      json.loads(json.dumps(out))
  ks = (1, 5, 10)
  # The names evaluate_generative gives its sampled protocol (minus invalid_id_rate).
  plain = set(metrics_lib.ranking_metrics(np.zeros((1, 10), int), np.zeros(1, int), ks))
  want = ((plain if protocol != "sampled" else set())
          | ({"sampled_" + m for m in plain} if protocol != "full" else set()))
  expected_models = {"Pop_R": {"rec", "search"}, "Pop_S": {"rec", "search"},
                     "BM25": {"search"}}
  if "sasrec" in names:
    expected_models["SASRec"] = {"rec"}
  assert {m: set(t) for m, t in out.items()} == expected_models
  for tasks in out.values():
    for m in tasks.values():
      assert set(m) == want
  if protocol == "full":
    return
  # The same 1 + 99 candidates as the generative models (the prepared dataset's).
  ds = prepared.load(os.path.join(workdir, "prepared"))
  ev = ds.events
  cand = dict(zip(ds.eval_events.tolist(), ds.candidates()))
  counts = data_stats.train_popularity(ev, ds.split, ds.catalog.num_items).astype(np.float64)
  for task, behaviour in baselines.TASKS.items():
    idx = np.flatnonzero((ds.split == TEST) & (ev.behaviour == behaviour))
    c_rows = np.stack([cand[e] for e in idx])
    assert c_rows.shape[1] == 100 and (c_rows[:, 0] == ev.item[idx]).all()
    ref = popularity.evaluate(counts[0], ev.item[idx], ks, candidates=c_rows)
    assert {k: out["Pop_R"][task]["sampled_" + k] for k in ref} == pytest.approx(ref)
    if task == "search":
      ref = bm25.bm25_baseline(ds.catalog, list(ev.query[idx]), ev.item[idx], ks,
                               candidates=c_rows, seed=int(config.seed))
      assert {k: out["BM25"][task]["sampled_" + k] for k in ref} == pytest.approx(ref)
      # 1 + 99 candidates instead of the catalog: the ranking problem is easier
      if protocol == "both":
        assert out["BM25"][task]["sampled_hr@10"] >= out["BM25"][task]["hr@10"]


def _oracle(inputs):
  """A toy baseline: ranks every TEST target first (hit rate 1 at every cut-off)."""
  def score(task, candidates):   # no item scores above the target, no ties
    above = np.zeros(inputs.test[task].size, int)
    return ranking.metrics_from_ranks(above, inputs.ks, above)
  return {"Oracle": {t: inputs.metrics(t, lambda c, t=t: score(t, c))
                     for t, idx in inputs.test.items() if idx.size}}


def test_a_new_baseline_is_one_registry_line(prepared_job, monkeypatch):
  from genret_jax.baselines import registry  # pylint: disable=g-import-not-at-top
  from genret_jax.pipeline import baselines  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(registry.BASELINES, "oracle", _oracle)
  c, workdir = prepared_job
  out = baselines.run_baselines(_resolved(c, **{"baselines": "oracle", "eval.protocol": "both"}),
                                workdir)
  assert set(out) == {"Oracle"} and set(out["Oracle"]) == {"rec", "search"}
  for m in out["Oracle"].values():
    assert m["hr@10"] == m["sampled_ndcg@5"] == 1.0
  with pytest.raises(ConfigError, match=r"config\.baselines: \['nope'\] not in \('pop', "
                                        r"'bm25', 'sasrec', 'oracle'\)"):
    _resolved(c, baselines="nope")


def _top1_share(inputs):
  """A toy analysis: per task and model, the share of TEST queries whose top-1 is the target."""
  return {task: {m: float(np.mean(p[:, 0] == inputs.targets[task])) for m, p in preds.items()}
          for task, preds in inputs.predictions.items() if preds}


def test_a_new_analysis_is_one_registry_line(prepared_job, monkeypatch, capsys):
  """A toy analysis registered in ANALYSES runs in the analyze step on saved predictions,
  and its log line and Markdown section reach the log and results.md."""
  from genret_jax.analysis import registry  # pylint: disable=g-import-not-at-top
  from genret_jax.pipeline import analyze, common, report, steps  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(registry.ANALYSES, "top1_share", registry.Analysis(
      _top1_share, lambda r: f"top1 share: {r}",
      lambda r: ["## Top-1 share", *(f"- {t}: {v}" for t, v in r.items())]))
  c, workdir = prepared_job
  config = _resolved(c, analyses="top1_share")
  targets = np.array([3, 5, 7, 9])
  for label, items in (("rec_only", [[3, 1], [0, 5], [7, 2], [1, 2]]),
                       ("joint", [[3, 1], [5, 0], [7, 2], [9, 2]])):
    os.makedirs(common.model_dir(workdir, label), exist_ok=True)
    np.savez(os.path.join(common.model_dir(workdir, label), "predictions_rec.npz"),
             items=np.array(items), targets=targets)
  models = [("rec_only", config), ("joint", config)]
  out = analyze.run_analyze(steps.Context(config, workdir), models, {"rec_only": "a", "joint": "b"})
  assert out == {"top1_share": {"rec": {"Gen_R": 0.5, "Gen_R+S": 1.0}}}
  assert "top1 share: {'rec': {'Gen_R': 0.5, 'Gen_R+S': 1.0}}" in capsys.readouterr().out
  assert json.load(open(os.path.join(workdir, "analysis.json")))["value"] == out
  md = report.write_report(workdir, {}, out)
  assert "## Top-1 share\n- rec: {'Gen_R': 0.5, 'Gen_R+S': 1.0}" in md
  with pytest.raises(ConfigError, match=r"config\.analyses: \['h3'\] not in \('h1', 'h2', "
                                        r"'top1_share'\)"):
    _resolved(c, analyses="h3")
