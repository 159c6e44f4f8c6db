"""BM25 baseline: exact rankings and metrics on a hand-made catalog, reference parity."""

import math

import bm25s
import numpy as np
import pytest

from genret_jax.baselines.topk import topk_rows
from genret_jax.baselines import bm25
from genret_jax.data.schema import Catalog
from genret_jax.evaluation.metrics import per_query_metrics

TITLES = ["red apple pie", "green apple", "blue car fast", "red car", "yellow banana"]
BRANDS = ["", "orchard", "", "", "orchard"]


def _catalog():
  return Catalog(item_ids=np.array(["a", "b", "c", "d", "e"]),
                 fields={"title": np.array(TITLES, object), "brand": np.array(BRANDS, object)})


def test_scores_match_bm25s_per_query_reference():
  texts = _catalog().texts()
  queries = ["red red apple", "car", "orchard banana pie", "nothing matches"]
  index = bm25.build_index(texts)
  ref = bm25s.BM25()
  ref.index(bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False),
            show_progress=False)
  want = np.stack([ref.get_scores(q) if q else np.zeros(5, np.float32) for q in
                   bm25s.tokenize(queries, stopwords="en", return_ids=False,
                                  show_progress=False)])
  np.testing.assert_allclose(bm25.score(index, queries), want, rtol=1e-5)
  assert (bm25.score(index, queries)[3] == 0).all()


def test_hand_computed_lucene_score():
  # 'pie' occurs once, in item 0 (3 tokens); texts 'red apple pie', 'green
  # apple; orchard', ... have 14 tokens in all. Lucene (>= 8) drops (k1 + 1).
  texts = _catalog().texts()
  s = bm25.score(bm25.build_index(texts), ["pie"])[0]
  n, df, avgdl, dl = 5, 1, 14 / 5, 3
  idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
  tf_part = 1 / (1 + 1.5 * (1 - 0.75 + 0.75 * dl / avgdl))
  assert s[0] == pytest.approx(idf * tf_part, rel=1e-6)
  assert (s[1:] == 0).all()


def test_unique_word_ranks_its_item_first_and_exact_metrics():
  cat = _catalog()
  queries = ["pie", "car", "banana", "green"]
  targets = np.array([0, 2, 4, 1])
  items = bm25.retrieve(bm25.build_index(cat.texts()), queries, 5)
  assert items.dtype == np.int32 and items.shape == (4, 5)
  assert items[0, 0] == 0 and items[2, 0] == 4 and items[3, 0] == 1
  # 'car': item 3 (2 tokens) beats item 2 (3 tokens): shorter document.
  assert items[1, :2].tolist() == [3, 2]
  m = bm25.bm25_baseline(cat, queries, targets, ks=(1, 2))
  assert m["recall@1"] == 0.75
  assert m["hr@2"] == 1.0
  assert m["ndcg@2"] == pytest.approx((3 + 1 / math.log2(3)) / 4)
  assert m["mrr"] == pytest.approx((3 + 0.5) / 4)
  pq = bm25.bm25_baseline(cat, queries, targets, ks=(1,), per_query=True)
  np.testing.assert_array_equal(pq["recall@1"], [1, 0, 1, 1])


def test_candidates_restrict_ranking():
  cat = _catalog()
  cands = np.array([[2, 0, 1], [1, 4, 3], [0, 3, 2]])
  items = bm25.retrieve(bm25.build_index(cat.texts()), ["pie", "car", "car"], 3, cands)
  for row, c in zip(items, cands):
    assert sorted(row.tolist()) == sorted(c.tolist())
  assert items[0, 0] == 0 and items[1, 0] == 3 and items[2, :2].tolist() == [3, 2]
  # The best item (3) is not a candidate of the first query: target 2 is first.
  m = bm25.bm25_baseline(cat, ["car", "car"], np.array([2, 2]), ks=(1,),
                         candidates=np.array([[2, 0, 1], [2, 3, 4]]))
  assert m["recall@1"] == 0.5


def test_ties_broken_by_seeded_permutation_not_position():
  cat = _catalog()
  index = bm25.build_index(cat.texts(), seed=3)
  items = bm25.retrieve(index, ["zzz"], 5)              # every item scores 0
  np.testing.assert_array_equal(items[0], np.argsort(index.tie_rank))
  cands = np.array([[4, 0, 2]])
  got = bm25.retrieve(index, ["zzz"], 3, cands)[0]
  np.testing.assert_array_equal(got, cands[0][np.argsort(index.tie_rank[cands[0]])])
  other = bm25.build_index(cat.texts(), seed=4)
  assert not np.array_equal(np.argsort(other.tie_rank), np.argsort(index.tie_rank))


def test_topk_rows_matches_full_lexsort():
  rng = np.random.default_rng(0)
  tied = rng.integers(0, 4, size=(50, 40)).astype(np.float32)     # ties across the boundary
  tied[0] = -np.inf
  distinct = rng.normal(size=(50, 40))                            # no ties: one partition
  mixed = np.where(rng.random((50, 1)) < 0.5, tied, distinct)
  tie = rng.permutation(40)
  for scores in (tied, distinct, mixed):
    for k in (1, 7, 40):
      got = topk_rows(scores, k, tie)
      want = np.stack([np.lexsort((tie, -row))[:k] for row in scores])
      np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kwargs, msg", [
    (dict(ties="first"), "ties='first'"),
    (dict(ks=()), "cut-offs"),
    (dict(targets=np.array([0])), "targets shape"),
    (dict(targets=np.array([0, 9])), "targets must be item indices"),
    (dict(candidates=np.array([[0, 1]])), "candidates shape"),
    (dict(candidates=np.array([[0, 7], [1, 2]])), "candidates must be item indices"),
])
def test_bad_inputs(kwargs, msg):
  args = dict(catalog=_catalog(), queries=["pie", "car"], targets=np.array([0, 2]), ks=(1,))
  args.update(kwargs)
  with pytest.raises(ValueError, match=msg):
    bm25.bm25_baseline(**args)


def test_bad_k_and_empty_corpus():
  index = bm25.build_index(_catalog().texts())
  with pytest.raises(ValueError, match="k=6"):
    bm25.retrieve(index, ["pie"], 6)
  with pytest.raises(ValueError, match="no queries"):
    bm25.bm25_baseline(_catalog(), [], np.zeros(0, np.int32), ks=(1,))
  with pytest.raises(ValueError, match="indexable word"):
    bm25.build_index(["a", "", "the"])
  with pytest.raises(ValueError, match=r"k=0"):
    topk_rows(np.zeros((1, 3)), 0, np.arange(3))
