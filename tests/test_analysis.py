"""H1 (popularity) and H2 (representation) analyses: exact values on tiny inputs."""

import math

import numpy as np
import pytest

from genret_jax.data import stats as data_stats
from genret_jax.analysis import h1, h2, plots
from genret_jax.data.schema import REC, SEARCH, Events
from genret_jax.data.splits import TEST, TRAIN, VALID

POP = np.array([0, 1, 2, 3, 4, 8, 9, 100])


def _is_png(path):
  with open(path, "rb") as f:
    head = f.read(8)
  return head == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def _events(user, item, behaviour):
  n = len(user)
  return Events(user=np.array(user, np.int32), item=np.array(item, np.int32),
                timestamp=np.arange(n, dtype=np.int64), behaviour=np.array(behaviour, np.int8),
                query=np.array([""] * n, object), user_ids=np.array(["u0", "u1"]))


# ---------------------------------------------------------------- H1

def test_bins_and_percentiles_exact():
  bins, labels = h1.popularity_bins(POP)
  assert bins.tolist() == [0, 1, 2, 2, 3, 4, 4, 7]
  assert labels == ["0", "1", "2-3", "4-7", "8-15", "16-31", "32-63", "64-127"]
  assert h1.popularity_percentiles(POP).tolist() == [6.25, 18.75, 31.25, 43.75, 56.25,
                                                     68.75, 81.25, 93.75]
  # Equal counts share the mid-rank.
  assert h1.popularity_percentiles(np.array([5, 5, 0, 9])).tolist() == [50.0, 50.0, 12.5, 87.5]


def test_smoothed_kl_exact():
  assert h1.smoothed_kl([2, 0], [0, 2]) == pytest.approx(0.5 * math.log(3))
  assert h1.smoothed_kl([3, 1, 0], [6, 2, 0], alpha=1e-9) == pytest.approx(0.0, abs=1e-8)
  assert h1.smoothed_kl([1, 2, 3], [1, 2, 3]) == 0.0
  with pytest.raises(ValueError, match="alpha"):
    h1.smoothed_kl([1], [1], alpha=0.0)


def test_h1_analysis_exact(tmp_path):
  targets = np.array([7, 1, 5])
  preds = {"Gen_R": np.array([7, 7, 7]),
           "Gen_S": np.array([[0, 1], [2, -1], [3, 4]]),
           "oracle": targets}
  path = tmp_path / "plots" / "h1.png"
  out = h1.h1_analysis(POP, preds, targets, top_k=2, plot_path=str(path), title="t")
  assert out["bins"][-1] == "64-127"
  assert out["target"]["bin_freq"] == pytest.approx([0, 1 / 3, 0, 0, 1 / 3, 0, 0, 1 / 3])
  assert out["target"]["mean_percentile"] == pytest.approx((93.75 + 18.75 + 68.75) / 3)
  assert out["target"]["mean_count"] == pytest.approx((100 + 1 + 8) / 3)
  r = out["models"]["Gen_R"]
  # P = (1,2,1,1,2,1,1,2)/11, Q = (1,1,1,1,1,1,1,4)/11.
  assert r["kl"] == pytest.approx(2 / 11 * math.log(2))
  assert (r["mean_percentile"], r["mean_count"], r["num_predictions"]) == (93.75, 100.0, 3)
  s = out["models"]["Gen_S"]                     # top-2, the -1 is ignored: items 0..4
  assert s["num_predictions"] == 5 and s["mean_count"] == 2.0
  assert s["bin_freq"] == pytest.approx([0.2, 0.2, 0.4, 0.2, 0, 0, 0, 0])
  assert s["mean_percentile"] == pytest.approx(31.25)
  assert out["models"]["oracle"]["kl"] == 0.0
  assert _is_png(path)
  top1 = h1.h1_analysis(POP, {"Gen_S": preds["Gen_S"]}, targets)
  assert top1["models"]["Gen_S"]["num_predictions"] == 3


def test_train_popularity_counts_train_only_per_behaviour():
  ev = _events([0, 0, 0, 1, 1, 1], [2, 2, 1, 0, 2, 2], [REC, REC, SEARCH, REC, SEARCH, REC])
  split = np.array([TRAIN, TRAIN, TRAIN, TRAIN, VALID, TEST])
  pop = data_stats.train_popularity(ev, split, 3)
  assert pop.tolist() == [[1, 0, 2], [0, 1, 0]]


@pytest.mark.parametrize("kwargs, msg", [
    (dict(popularity=np.array([1, -1, 2])), "popularity"),
    (dict(targets=np.array([0, 8, 1])), "targets"),
    (dict(predictions={"m": np.array([0, 1])}), "has 2 rows"),
    (dict(predictions={"m": np.array([-1, -1, -1])}), "no predicted item"),
    (dict(predictions={"m": np.array([0, 9, 1])}), "item 9"),
    (dict(predictions={}), "no predictions"),
    (dict(top_k=0), "top_k"),
])
def test_h1_bad_inputs(kwargs, msg):
  args = dict(popularity=POP, predictions={"m": np.array([0, 1, 2])},
              targets=np.array([0, 1, 2]))
  args.update(kwargs)
  with pytest.raises(ValueError, match=msg):
    h1.h1_analysis(**args)


# ---------------------------------------------------------------- H2

def test_cooccurrence_exact():
  user = np.array([0, 0, 0, 1, 1, 1])
  item = np.array([0, 1, 2, 1, 0, 0])
  c1 = h2.cooccurrence_matrix(user, item, 4, window=1).toarray()
  assert c1.tolist() == [[0, 2, 0, 0], [2, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
  c2 = h2.cooccurrence_matrix(user, item, 4, window=2).toarray()
  assert c2.tolist() == [[0, 3, 1, 0], [3, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
  ev = _events([0, 0, 0, 1], [0, 1, 2, 1], [REC, SEARCH, REC, REC])
  u, i = h2.train_sequences(ev, np.array([TRAIN, TRAIN, TRAIN, TEST]))
  assert u.tolist() == [0, 0] and i.tolist() == [0, 2]


def test_knn_reference_positive_only_and_validity():
  sim = np.array([[9, 3, 1, 0], [3, 9, 0, 0], [1, 0, 9, 2], [0, 0, 2, 9]], np.float64)
  nbrs, valid = h2.knn_reference(sim, 2)
  assert valid.tolist() == [True, False, True, False]
  assert nbrs[0].tolist() == [1, 2] and nbrs[2].tolist() == [3, 0]
  import scipy.sparse as sp
  nbrs_sp, valid_sp = h2.knn_reference(sp.csr_matrix(sim), 2)
  np.testing.assert_array_equal(nbrs_sp[valid], nbrs[valid])
  assert valid_sp.tolist() == valid.tolist()


def test_neighbour_overlap_exact():
  learned = np.array([[1, 2], [0, 2], [0, 1]])
  ref = np.array([[2, 3], [2, 0], [3, 3]])
  out = h2.neighbour_overlap(learned, ref, np.array([True, True, False]))
  assert out == {"overlap": 0.75, "jaccard": pytest.approx((1 / 3 + 1) / 2), "num_items": 2}
  assert h2.neighbour_overlap(learned, ref, np.zeros(3, bool))["num_items"] == 0


def _texts(n, seed=0):
  rng = np.random.default_rng(seed)
  words = [f"w{i}" for i in range(60)]
  return [" ".join(rng.choice(words, 6)) for _ in range(n)]


def test_overlap_one_when_embedding_is_reference_and_chance_when_random(tmp_path):
  n, k = 300, 10
  texts = _texts(n)
  rng = np.random.default_rng(1)
  user = np.repeat(np.arange(30), 40)
  item = rng.integers(0, n, user.size)
  tfidf = h2.tfidf_matrix(texts).toarray()
  path = tmp_path / "tsne.png"
  out = h2.h2_analysis({"content": tfidf, "random": rng.normal(size=(n, 32))}, texts,
                       user, item, k=k, popularity=rng.integers(0, 50, n),
                       plot_path=str(path), tsne_items=60, tsne_iter=250)
  assert out["chance_overlap"] == k / (n - 1)
  assert out["references"]["content"]["num_items"] == n
  c = out["models"]["content"]["content"]
  assert c["overlap"] == 1.0 and c["jaccard"] == 1.0 and c["num_items"] == n
  for ref in ("content", "cooccurrence"):
    r = out["models"]["random"][ref]
    assert abs(r["overlap"] - k / (n - 1)) < 0.012, (ref, r)
    assert r["num_items"] == out["references"][ref]["num_items"] > 100
  assert _is_png(path)


def test_cooccurrence_embedding_recovers_cooccurrence_neighbours():
  # Two disjoint item groups that only co-occur within themselves; embeddings
  # = one-hot group + tiny noise: every learned neighbour is in the group.
  n, k = 40, 3
  group = np.arange(n) % 2
  rng = np.random.default_rng(0)
  seqs = [rng.permutation(np.flatnonzero(group == g)) for g in (0, 1) for _ in range(6)]
  user = np.concatenate([np.full(s.size, u) for u, s in enumerate(seqs)])
  item = np.concatenate(seqs)
  nbrs, valid = h2.knn_reference(h2.cooccurrence_matrix(user, item, n, 5), k)
  emb = np.eye(2)[group] + 1e-3 * rng.normal(size=(n, 2))
  learned = h2.knn_embeddings(emb, k)
  assert (group[learned] == group[:, None]).all()
  assert (group[nbrs[valid]] == group[valid, None]).all()


def test_h2_bad_inputs():
  texts = _texts(10)
  u, i = np.zeros(4, np.int64), np.arange(4)
  good = np.ones((10, 3))
  with pytest.raises(ValueError, match="no embeddings"):
    h2.h2_analysis({}, texts, u, i)
  with pytest.raises(ValueError, match=r"shape \(9, 3\)"):
    h2.h2_analysis({"m": np.ones((9, 3))}, texts, u, i)
  with pytest.raises(ValueError, match="non-finite"):
    h2.h2_analysis({"m": np.full((10, 3), np.nan)}, texts, u, i)
  with pytest.raises(ValueError, match="needs popularity"):
    h2.h2_analysis({"m": good}, texts, u, i, plot_path="x.png")
  with pytest.raises(ValueError, match="k=10"):
    h2.h2_analysis({"m": good}, texts, u, i, k=10)
  with pytest.raises(ValueError, match="window"):
    h2.cooccurrence_matrix(u, i, 10, window=0)
  with pytest.raises(ValueError, match="items must be"):
    h2.cooccurrence_matrix(u, i + 8, 10)
  with pytest.raises(ValueError, match="content word"):
    h2.tfidf_matrix(["the", "", "and"])
  with pytest.raises(ValueError, match="square"):
    h2.knn_reference(np.ones((3, 4)), 1)
  with pytest.raises(ValueError, match="at least 5"):
    h2.tsne_coords({"m": good}, np.arange(3))


def test_sweep_plot(tmp_path):
  path = tmp_path / "s1.png"
  plots.sweep_plot({"Gen_R": {0.0: [0.1, 0.12], 0.5: [0.2, 0.22]},
                    "Gen_R+S": {0.0: [0.15], 0.5: [0.25]}}, str(path),
                   knob="alignment", metric="recall@30")
  assert _is_png(path)
  with pytest.raises(ValueError, match="non-finite"):
    plots.sweep_plot({"m": {0.0: [float("nan")]}}, str(path), knob="k", metric="m")
  with pytest.raises(ValueError, match="no models"):
    plots.sweep_plot({}, str(path), knob="k", metric="m")


def test_knn_content_equals_reference_of_full_cosine():
  x = h2.tfidf_matrix(_texts(120, seed=3))
  got, valid = h2.knn_content(x, 4, seed=2)
  want, want_valid = h2.knn_reference((x @ x.T).toarray(), 4, seed=2)
  np.testing.assert_array_equal(valid, want_valid)
  np.testing.assert_array_equal(got[valid], want[valid])
