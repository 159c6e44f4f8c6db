"""SASRec, popularity and the ranking metrics; SASRec beats popularity on MovieLens."""

import numpy as np
import pytest

from genret_jax import config as base_config
from genret_jax.baselines import popularity, ranking, sasrec, sequences
from genret_jax.data.schema import REC, SEARCH, Catalog, Events
from genret_jax.data.splits import TEST, TRAIN, VALID, leave_one_out
from genret_jax.errors import ConfigError
from genret_jax.ids import build
from genret_jax.ids import embeddings as emb


def _events(rows):
  """rows: (user, item, time, behaviour)."""
  u, i, t, b = (np.array(c) for c in zip(*rows))
  return Events(u.astype(np.int32), i.astype(np.int32), t.astype(np.int64), b.astype(np.int8),
                np.array(["q" if x == SEARCH else "" for x in b], object),
                np.array([f"u{k}" for k in range(u.max() + 1)]))


def test_sequences_use_only_train_rec_events_and_earlier_history():
  # user 0: rec items 5,6,7,8 (8 TEST, 7 VALID) and a search event in between;
  # user 1: rec items 1,2 (2 TEST).
  ev = _events([(0, 5, 1, REC), (0, 9, 2, SEARCH), (0, 6, 3, REC), (0, 7, 4, REC),
                (0, 8, 5, REC), (1, 1, 1, REC), (1, 2, 2, REC)])
  split = leave_one_out(ev)
  seqs = sequences.train_sequences(ev, split, max_len=3)
  np.testing.assert_array_equal(seqs, [[0, 0, 6, 7]])       # items + 1; user 1 has one TRAIN
  x, y = sequences.eval_examples(ev, split, TEST, max_len=3)
  np.testing.assert_array_equal(y, [8, 2])
  np.testing.assert_array_equal(x, [[6, 7, 8], [0, 0, 2]])
  x, y = sequences.eval_examples(ev, split, VALID, max_len=2)
  np.testing.assert_array_equal(y, [7])
  np.testing.assert_array_equal(x, [[6, 7]])
  assert split[1] == TRAIN and ev.behaviour[1] == SEARCH    # search item 9 in no sequence


def test_metrics_from_ranks_exact():
  m = ranking.metrics_from_ranks(np.array([0, 1, 4, 20]), (1, 5))
  assert m["recall@1"] == 0.25 and m["recall@5"] == 0.75
  assert m["ndcg@5"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(6)) / 4)
  # A target tied with 3 others right after 3 better items: positions 3..6 equally likely.
  t = ranking.metrics_from_ranks(np.array([3]), (5,), np.array([3]))
  assert t["recall@5"] == pytest.approx(2 / 4)
  assert t["ndcg@5"] == pytest.approx((1 / np.log2(5) + 1 / np.log2(6)) / 4)


def test_popularity_ranks_by_train_counts():
  ev = _events([(0, 2, 1, REC), (0, 2, 2, REC), (0, 1, 3, REC), (0, 0, 4, REC),
                (1, 2, 1, REC), (1, 3, 2, REC), (1, 3, 3, SEARCH), (1, 3, 4, SEARCH)])
  split = leave_one_out(ev)
  scores = popularity.popularity_scores(ev, split, 4)
  np.testing.assert_array_equal(scores, [0, 0, 3, 0])   # (0,1) VALID, (0,0) TEST, (1,3) TEST
  m = popularity.evaluate(scores, np.array([2, 0]), (1, 2))
  assert m["recall@1"] == 0.5                                # item 2 first; item 0 tied x3
  assert m["recall@2"] == pytest.approx((1 + 1 / 3) / 2)


def test_batched_ranks_equals_numpy_reference():
  rng = np.random.default_rng(0)
  table = rng.normal(size=(30, 7)).astype(np.float32)
  queries = rng.normal(size=(11, 7)).astype(np.float32)
  targets = rng.integers(30, size=11).astype(np.int32)
  fn = ranking.make_rank_fn(lambda p, x: x @ p.T)
  above, ties = ranking.batched_ranks(fn, table, queries, targets, batch_size=4)
  s = queries @ table.T
  ref = (s > s[np.arange(11), targets][:, None]).sum(1)
  np.testing.assert_array_equal(above, ref)
  np.testing.assert_array_equal(ties, 0)
  above, ties = ranking.batched_ranks(fn, np.ones((30, 7), np.float32), queries, targets)
  np.testing.assert_array_equal(above, 0)
  np.testing.assert_array_equal(ties, 29)


def test_sasrec_learns_a_sequential_pattern_and_rejects_bad_config():
  rng = np.random.default_rng(0)
  rows = []
  for u in range(120):
    start = rng.integers(40)
    rows += [(u, (start + t) % 40, t, REC) for t in range(12)]
  ev = _events(rows)
  split = leave_one_out(ev)
  # Through the ids entry point, as the ID builders call it.
  c = base_config.get_base_config().ids
  c.sasrec.update(dim=16, max_len=12, epochs=12, eval_every=6, batch_size=32,
                  learning_rate=5e-3, dropout=0.0, seed=0)
  catalog = Catalog(np.array([f"i{k}" for k in range(40)]), {"title": np.full(40, "", object)})
  table, info = emb.collaborative_embeddings(c, catalog, ev, split)
  assert table.shape == (40, 16) and info["source"] == "sasrec"
  assert info["test"]["recall@10"] > 0.8                   # the next item is start + t
  assert info["best_epoch"] in (6, 12) and len(info["valid"]) == 2
  _, y = sequences.eval_examples(ev, split, TEST, 12)
  pop = popularity.evaluate(popularity.popularity_scores(ev, split, 40), y, (10,))
  assert pop["recall@10"] < 0.5
  with pytest.raises(ConfigError, match="ids.sasrec.loss"):
    sasrec.train_sasrec(ev, split, 40, loss="hinge")
  with pytest.raises(ConfigError, match="ids.sasrec.num_heads"):
    sasrec.train_sasrec(ev, split, 40, dim=10, num_heads=3)


def test_sasrec_stops_after_patience_passes_without_improvement():
  """With learning rate 0 the parameters never move, so VALID NDCG never improves after
  the first pass: patience 2 with a pass every epoch stops at epoch 3, keeping epoch 1."""
  rows = [(u, (u + t) % 20, t, REC) for u in range(30) for t in range(6)]
  ev = _events(rows)
  split = leave_one_out(ev)
  kwargs = dict(dim=8, max_len=6, epochs=10, eval_every=1, batch_size=16, learning_rate=0.0,
                dropout=0.0, seed=0)
  res = sasrec.train_sasrec(ev, split, 20, patience=2, **kwargs)
  assert (res.epochs_trained, res.best_epoch, len(res.valid_history)) == (3, 1, 3)
  full = sasrec.train_sasrec(ev, split, 20, **kwargs)           # patience 0: every epoch
  assert (full.epochs_trained, full.best_epoch, len(full.valid_history)) == (10, 1, 10)
  assert res.test_metrics == full.test_metrics                  # the same (epoch 1) params
  c = base_config.get_base_config()
  c.ids.sasrec.patience = -1
  with pytest.raises(ConfigError, match="ids.sasrec.patience: must be an integer >= 0"):
    build.validate(c)


@pytest.mark.slow
def test_sasrec_beats_popularity_on_movielens(movielens_dir):
  from genret_jax.data.readers import load_raw
  c = base_config.get_base_config()
  c.data.update(source="movielens", path=str(movielens_dir))
  catalog, events = load_raw(c.data)
  split = leave_one_out(events)
  res = sasrec.train_sasrec(events, split, catalog.num_items, dim=32, max_len=50, epochs=20,
                            eval_every=5, batch_size=64, learning_rate=2e-3, seed=0)
  _, y = sequences.eval_examples(events, split, TEST, 50)
  pop = popularity.evaluate(popularity.popularity_scores(events, split, catalog.num_items), y,
                            (10,))
  # Measured at 4c6f31e: SASRec R@10 .0230 (14 users), popularity .0197 (12) of 610; N@10
  # .0135 vs .0092. A thin margin on 610 users: a sanity check, not a comparison.
  assert res.test_metrics["recall@10"] > pop["recall@10"]
  assert res.test_metrics["ndcg@10"] > pop["ndcg@10"]
