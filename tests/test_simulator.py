"""Simulator: determinism, sizes, and that S1 / S2 / S3 are what the knobs say."""

import numpy as np
import pytest

from genret_jax.data import config as data_config
from genret_jax.data import simulator
from genret_jax.data.schema import REC, SEARCH


def sim_config(**overrides):
  c = data_config.simulator_config()
  for k, v in overrides.items():
    c[k] = v
  return c


def arrays(catalog, events):
  return [catalog.item_ids, *catalog.fields.values(), events.user, events.item,
          events.timestamp, events.behaviour, events.query, events.user_ids]


def test_deterministic_given_seed():
  a = simulator.simulate_world(sim_config(), 3)
  b = simulator.simulate_world(sim_config(), 3)
  c = simulator.simulate_world(sim_config(), 4)
  for x, y in zip(arrays(*a[:2]), arrays(*b[:2])):
    assert np.array_equal(x, y)
  assert not np.array_equal(a[1].item, c[1].item)
  assert not np.array_equal(a[0].fields["title"], c[0].fields["title"])
  # simulate() on the data block uses data.seed.
  d = data_config.default_config()
  d.seed = 3
  for x, y in zip(arrays(*simulator.simulate(d)), arrays(*a[:2])):
    assert np.array_equal(x, y)


def test_default_shapes_and_schema():
  catalog, events, world = simulator.simulate_world(sim_config(), 0)
  assert catalog.num_items == 500 and events.num_users == 1000
  assert events.num_events == 20000
  assert events.user.dtype == np.int32 and events.item.dtype == np.int32
  assert events.behaviour.dtype == np.int8 and events.timestamp.dtype == np.int64
  assert events.synthetic_time
  assert np.array_equal(events.user, np.repeat(np.arange(1000), 20))
  assert np.array_equal(events.timestamp, np.tile(np.arange(20), 1000))
  search = events.behaviour == SEARCH
  # Sessions of 5 share a behaviour; about 30% of them are search sessions.
  assert np.all(events.behaviour.reshape(-1, 5) == events.behaviour.reshape(-1, 5)[:, :1])
  assert abs(search.mean() - 0.3) < 0.03
  assert np.all(events.query[~search] == "") and np.all(events.query[search] != "")
  assert len(set(catalog.item_ids)) == 500
  assert world.query_items.shape == (125, 4)
  assert np.array_equal(np.sort(world.query_items.ravel()), np.arange(500))


def test_text_carries_cluster_and_query_signal():
  catalog, events, world = simulator.simulate_world(sim_config(), 0)
  cats = catalog.fields["categories"]
  # Items of one cluster share category words; different clusters do not.
  for c in range(world.cluster.max() + 1):
    assert len(set(cats[world.cluster == c])) == 1
  assert len(set(cats)) == 25
  # A search event's query is the description of its item's query set.
  search = events.behaviour == SEARCH
  assert np.array_equal(events.query[search], catalog.fields["description"][events.item[search]])
  assert len(set(catalog.fields["title"])) == 500
  words = [w for f in catalog.fields.values() for s in f for w in s.split()]
  assert all(w.isalpha() and w.islower() for w in words)
  assert len(words) == 500 * (2 + 3 + 2)


@pytest.mark.parametrize("target", [0.0, 0.1, 0.5, 1.0, 2.0])
def test_s1_popularity_kl(target):
  cfg = sim_config(popularity_kl=target, num_users=4000)
  catalog, events, world = simulator.simulate_world(cfg, 1)
  assert world.popularity_kl == pytest.approx(target, abs=1e-6)
  measured = simulator.popularity_kl(events, catalog.num_items)
  # The empirical KL (24k search / 56k rec events, smoothed counts) is a
  # noisy, slightly biased estimate of the population value.
  assert abs(measured - target) < 0.05 + 0.05 * target, measured


def test_marginals_are_the_target_popularities():
  cfg = sim_config(num_users=4000, popularity_kl=1.0)
  catalog, events, world = simulator.simulate_world(cfg, 2)
  for beh, p in ((REC, world.p_rec), (SEARCH, world.p_search)):
    freq = np.bincount(events.item[events.behaviour == beh], minlength=500)
    freq = freq / freq.sum()
    assert 0.5 * np.abs(freq - p).sum() < 0.06      # total variation
  assert world.p_rec.max() / world.p_rec.min() == pytest.approx(500.0)   # Zipf, a = 1


def test_zipf_exponent_controls_concentration():
  top = []
  for a in (0.0, 0.5, 1.5):
    _, events, world = simulator.simulate_world(sim_config(zipf_exponent=a), 0)
    rec = np.bincount(events.item[events.behaviour == REC], minlength=500)
    top.append(np.sort(rec)[::-1][:10].sum() / rec.sum())
    assert np.allclose(np.sort(world.p_rec)[::-1][:3],
                       (np.arange(1, 4.0) ** -a) / np.sum(np.arange(1, 501.0) ** -a))
  assert top[0] < top[1] < top[2]


@pytest.mark.parametrize("s2,s3,clusters", [(0.0, 0.0, 25), (0.3, 0.6, 25), (0.8, 0.9, 25),
                                             (1.0, 1.0, 25), (0.5, 0.5, 25), (0.5, 0.7, 2),
                                             (0.0, 0.2, 125)])
def test_s2_s3_structure(s2, s3, clusters):
  cfg = sim_config(matching_queries=s2, relevant_pairs=s3, num_clusters=clusters)
  _, _, world = simulator.simulate_world(cfg, 5)
  g = world.query_items.shape[0]
  assert abs(world.matching_fraction - s2) <= 1.0 / g
  assert abs(world.relevant_pair_fraction - s3) <= 1.0 / g
  # Recompute "matching" from the clusters of each query's items.
  cl = world.cluster[world.query_items]
  assert np.array_equal(world.matching, np.all(cl == cl[:, :1], axis=1))
  assert not np.any(world.matching & world.bundled)


def _rec_pair_cooccurrence(events, world, queries):
  """Fraction of the queries' relevant pairs seen together in a rec session."""
  sessions = events.item.reshape(-1, 5)[events.behaviour.reshape(-1, 5)[:, 0] == REC]
  i, j = np.triu_indices(5, 1)
  a, b = sessions[:, i].ravel(), sessions[:, j].ravel()
  seen = set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist()))
  qi, qj = np.triu_indices(world.query_items.shape[1], 1)
  pairs = world.query_items[queries][:, qi].ravel(), world.query_items[queries][:, qj].ravel()
  pa, pb = np.minimum(*pairs), np.maximum(*pairs)
  return np.mean([(x, y) in seen for x, y in zip(pa.tolist(), pb.tolist())])


def test_s3_relevant_pairs_cooccur_in_recommendation():
  cfg = sim_config(matching_queries=0.0, relevant_pairs=0.5, num_users=3000,
                   cooccurrence=1.0)
  _, events, world = simulator.simulate_world(cfg, 7)
  bundled = np.nonzero(world.bundled)[0]
  loose = np.nonzero(~world.bundled & ~world.matching)[0]
  assert bundled.size == 62 and loose.size == 63
  # With every event drawn inside its session's group, only bundled (or
  # matching) queries' relevant pairs can co-occur in a rec session.
  assert _rec_pair_cooccurrence(events, world, loose) == 0.0
  assert _rec_pair_cooccurrence(events, world, bundled) > 0.3


def test_s2_matching_queries_cooccur_through_clusters():
  cfg = sim_config(matching_queries=0.5, relevant_pairs=0.5, num_users=3000,
                   cooccurrence=1.0)
  _, events, world = simulator.simulate_world(cfg, 8)
  match = np.nonzero(world.matching)[0]
  loose = np.nonzero(~world.matching & ~world.bundled)[0]
  assert _rec_pair_cooccurrence(events, world, match) > 0.3
  assert _rec_pair_cooccurrence(events, world, loose) == 0.0


def test_cooccurrence_zero_is_popularity_only():
  cfg = sim_config(cooccurrence=0.0, num_users=3000)
  _, events, world = simulator.simulate_world(cfg, 9)
  # Same-cluster rate inside rec sessions equals the chance rate sum_c m_c^2.
  sess = events.item.reshape(-1, 5)[events.behaviour.reshape(-1, 5)[:, 0] == REC]
  same = (world.cluster[sess[:, 0]] == world.cluster[sess[:, 1]]).mean()
  mass = np.bincount(world.cluster, weights=world.p_rec)
  assert abs(same - np.sum(mass ** 2)) < 0.02


def _rec_session_groups(cfg, seed):
  """Per rec session: (user, cluster of its first item) with cooccurrence 1."""
  _, events, world = simulator.simulate_world(cfg, seed)
  beh = events.behaviour.reshape(-1, 5)[:, 0]
  users = events.user.reshape(-1, 5)[:, 0]
  clusters = world.cluster[events.item.reshape(-1, 5)]
  assert np.all(clusters[beh == REC] == clusters[beh == REC][:, :1])   # one group each
  return users[beh == REC], clusters[beh == REC, 0], world


@pytest.mark.parametrize("focus", [0.0, 1.0])
def test_user_focus_persists_interests(focus):
  cfg = sim_config(user_focus=focus, cooccurrence=1.0, matching_queries=1.0,
                   relevant_pairs=1.0, num_users=2000)
  users, clusters, world = _rec_session_groups(cfg, 11)
  same_user = users[1:] == users[:-1]
  repeat = (clusters[1:] == clusters[:-1])[same_user].mean()
  chance = np.sum(np.bincount(world.cluster, weights=world.p_rec) ** 2)
  if focus == 1.0:
    assert repeat == 1.0
  else:
    assert abs(repeat - chance) < 0.03
  # Either way the rec item marginal is p_rec.
  _, events, _ = simulator.simulate_world(cfg, 11)
  freq = np.bincount(events.item[events.behaviour == REC], minlength=500)
  assert 0.5 * np.abs(freq / freq.sum() - world.p_rec).sum() < 0.08


def test_pseudo_words_grow_longer_when_the_inventory_is_short(monkeypatch):
  """Past a quarter of the 2-3 syllable inventory, words get more syllables
  (here 2 syllables 'ba'/'da': 12 words of 2-3 syllables, 40 asked for)."""
  monkeypatch.setattr(simulator, "_CONSONANTS", np.asarray(["b", "d"]))
  monkeypatch.setattr(simulator, "_VOWELS", np.asarray(["a"]))
  words = simulator._pseudo_words(np.random.default_rng(0), 40).tolist()
  assert len(set(words)) == 40
  assert all(set(w) <= set("bda") and len(w) % 2 == 0 for w in words)
  assert max(len(w) // 2 for w in words) > 3 and min(len(w) // 2 for w in words) >= 2
