"""Sampled candidates of the GenSAR protocol: popularity rec negatives, BM25 search negatives."""

import numpy as np
import pytest

from genret_jax.data import negatives
from genret_jax.data.schema import REC, SEARCH, Events
from genret_jax.data.splits import TEST, TRAIN, VALID, leave_one_out
from genret_jax.errors import DataError


def make_events(user, item, behaviour=None, query=None) -> Events:
  n = len(user)
  user = np.asarray(user, np.int32)
  return Events(user=user, item=np.asarray(item, np.int32),
                timestamp=np.arange(n, dtype=np.int64),
                behaviour=np.asarray(behaviour if behaviour is not None else [REC] * n, np.int8),
                query=np.asarray(query if query is not None else [""] * n, dtype=object),
                user_ids=np.array([f"u{u}" for u in range(user.max() + 1)], dtype=object))


def random_events(num_users=60, num_items=300, per_user=30, seed=0) -> Events:
  rng = np.random.default_rng(seed)
  user = np.repeat(np.arange(num_users), per_user)
  # Zipf-like popularity so the sampler's bias is visible.
  p = 1.0 / np.arange(1, num_items + 1)
  item = rng.choice(num_items, size=len(user), p=p / p.sum())
  return make_events(user, item)


def test_rec_negatives_exclude_history_distinct_and_deterministic():
  ev = random_events()
  split = leave_one_out(ev)
  targets = np.flatnonzero(split != TRAIN)
  neg = negatives.rec_negatives(ev, split, targets, 300, seed=3)
  assert neg.shape == (len(targets), 99) and neg.dtype == np.int32
  for row, t in zip(neg, targets):
    seen = set(ev.item[ev.user == ev.user[t]].tolist())
    assert len(set(row.tolist())) == 99
    assert not seen & set(row.tolist())
    assert ev.item[t] not in row
  np.testing.assert_array_equal(neg, negatives.rec_negatives(ev, split, targets, 300, seed=3))
  assert not np.array_equal(neg, negatives.rec_negatives(ev, split, targets, 300, seed=4))


def test_rec_negatives_follow_popularity():
  """Users 0..19 make items 0..19 popular (200 train events each); 400 light users saw only
  item 299. Sequential weighted sampling: a row's first negative is a draw proportional to
  (train count + 1) over the allowed items."""
  heavy_user = np.repeat(np.arange(20), 200)
  heavy_item = np.tile(np.arange(20), 200)
  light_user = np.repeat(np.arange(20, 420), 3)
  user = np.concatenate([heavy_user, light_user])
  item = np.concatenate([heavy_item, np.full(len(light_user), 299)])
  ev = make_events(user, item)
  split = leave_one_out(ev)
  targets = np.flatnonzero((split == TEST) & (ev.user >= 20))
  neg = negatives.rec_negatives(ev, split, targets, 300, seed=0)
  w_top = sum(np.bincount(ev.item[split == TRAIN], minlength=300)[:20] + 1)
  expected = w_top / (w_top + 279)
  assert abs(np.mean(neg[:, 0] < 20) - expected) < 0.05
  assert not (neg == 299).any()
  freq = np.bincount(neg.ravel(), minlength=300)
  assert freq[:20].min() > 3 * freq[20:299].mean()


def test_rec_negatives_exact_fallback_when_few_items_left():
  """A user who saw all but 100 items: the draw streams run short; the Gumbel pass is exact."""
  num_items = 400
  heavy = np.arange(300)                     # user 0 saw items 0..299 (the popular ones)
  user = np.concatenate([np.zeros(300, int), np.ones(5, int)])
  item = np.concatenate([heavy, [0, 1, 2, 3, 4]])
  ev = make_events(user, item)
  split = leave_one_out(ev)
  targets = np.flatnonzero((split != TRAIN) & (ev.user == 0))
  neg = negatives.rec_negatives(ev, split, targets, num_items, seed=1)
  for row in neg:
    assert len(set(row.tolist())) == 99 and row.min() >= 300


def test_rec_negatives_error_names_user():
  ev = make_events(np.zeros(150, int), np.arange(150))
  split = leave_one_out(ev)
  with pytest.raises(DataError, match=r"ratings.csv: user: user u0 interacted with 150 of 200"):
    negatives.rec_negatives(ev, split, np.flatnonzero(split == TEST), 200, seed=0,
                            source="ratings.csv")


def test_search_negatives_are_bm25_ranked_and_exclude_target():
  texts = [f"filler item {i} plain" for i in range(150)]
  texts[10] = "red lipstick matte red"      # highest BM25 for "red lipstick"
  texts[11] = "red lipstick"
  texts[12] = "lipstick case"
  texts[13] = "red shoes"
  queries = np.array(["red lipstick", "red lipstick", "zzz unknown"], dtype=object)
  neg = negatives.search_negatives(texts, queries, np.array([11, 50, 7]), seed=0)
  assert neg.shape == (3, 99)
  assert neg[0, :3].tolist() in ([10, 12, 13], [10, 13, 12])   # target 11 excluded
  assert neg[1, :2].tolist() == [11, 10] or neg[1, :2].tolist() == [10, 11]
  assert set(neg[1, :4].tolist()) == {10, 11, 12, 13}
  for row, t in zip(neg, [11, 50, 7]):
    assert t not in row and len(set(row.tolist())) == 99
  # Ties (all zero scores for an unknown query) are broken by the seeded permutation.
  np.testing.assert_array_equal(neg, negatives.search_negatives(texts, queries,
                                                                np.array([11, 50, 7]), seed=0))
  other = negatives.search_negatives(texts, queries, np.array([11, 50, 7]), seed=1)
  assert not np.array_equal(neg[2], other[2])
  assert other[0, 0] == 10 and set(other[0, :3].tolist()) == {10, 12, 13}


def test_search_negatives_need_enough_items():
  with pytest.raises(DataError, match="items.tsv: items: 50 items"):
    negatives.search_negatives(["a"] * 50, np.array(["a"]), np.array([0]), 0,
                               source="items.tsv")


def test_sample_candidates_covers_every_eval_event():
  rng = np.random.default_rng(0)
  n = 40 * 12
  user = np.repeat(np.arange(40), 12)
  behaviour = np.tile([REC, SEARCH, REC, REC], 120)
  item = rng.integers(0, 200, n)
  query = np.where(behaviour == SEARCH, "red item", "").astype(object)
  ev = make_events(user, item, behaviour, query)
  split = leave_one_out(ev)
  texts = [f"red item {i}" if i % 3 == 0 else f"blue thing {i}" for i in range(200)]
  eval_events, neg = negatives.sample_candidates(ev, split, texts, seed=0)
  np.testing.assert_array_equal(eval_events, np.flatnonzero(np.isin(split, [VALID, TEST])))
  assert neg.shape == (len(eval_events), 99)
  search_rows = ev.behaviour[eval_events] == SEARCH
  # Search negatives are BM25-hard: the "red item" texts come first.
  assert (neg[search_rows][:, :60] % 3 == 0).all()
  assert (neg != ev.item[eval_events, None]).all()


def test_top_k_matches_a_full_lexsort():
  """The O(N) top-k equals sorting everything by (score desc, tie-break asc)."""
  rng = np.random.default_rng(0)
  for _ in range(200):
    n = int(rng.integers(101, 400))
    scores = rng.integers(0, rng.integers(1, 6), n) * rng.choice([1.0, 0.37])
    tiebreak = rng.permutation(n)
    expected = np.lexsort((tiebreak, -scores))[:100]
    np.testing.assert_array_equal(
        negatives._top_k(scores, tiebreak, np.argsort(tiebreak), 100), expected)


def _dense_search_negatives(texts, queries, targets, seed, n=99):
  """The reference: bm25s's dense get_scores per query + the O(N) top-k."""
  import bm25s
  retriever = bm25s.BM25()
  retriever.index(bm25s.tokenize(list(texts), stopwords="en", show_progress=False),
                  show_progress=False)
  tiebreak = np.random.default_rng(seed).permutation(len(texts))
  out = []
  for words, t in zip(bm25s.tokenize(list(queries), stopwords="en", show_progress=False,
                                     return_ids=False), targets):
    words = [w for w in words if w in retriever.vocab_dict]
    scores = np.asarray(retriever.get_scores(words) if words else np.zeros(len(texts)),
                        np.float64)
    top = negatives._top_k(scores, tiebreak, np.argsort(tiebreak), n + 1)
    out.append(top[top != t][:n])
  return np.stack(out)


def test_search_negatives_equal_dense_bm25_scoring():
  """The sparse per-query scoring gives exactly bm25s's dense ranking (ties included)."""
  rng = np.random.default_rng(0)
  words = np.array([f"w{i}" for i in range(40)] + ["the", "and", "red"])
  for trial in range(6):
    n = int(rng.integers(120, 400))
    texts = [" ".join(rng.choice(words, int(rng.integers(0, 9)))) for _ in range(n)]
    queries = [" ".join(rng.choice(np.append(words, "zzz"), int(rng.integers(0, 7))))
               for _ in range(60)]
    queries += ["red red w1", "the and", "", "w3 w3 w3 w3 w7 w8 w9 w10 w11"]
    targets = rng.integers(0, n, len(queries))
    got = negatives.search_negatives(texts, np.array(queries, dtype=object), targets,
                                     seed=trial)
    np.testing.assert_array_equal(got, _dense_search_negatives(texts, queries, targets, trial))
