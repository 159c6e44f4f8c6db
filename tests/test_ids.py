"""build_identifiers: every scheme, saving, the report, and the error paths."""

import json
import os

import numpy as np
import pytest

from genret_jax import config as base_config
from genret_jax.data.readers import load_raw
from genret_jax.data.schema import REC, SEARCH, Catalog, Events
from genret_jax.data.splits import leave_one_out
from genret_jax.errors import ConfigError, DataError
from genret_jax.ids import build, schemes, stats
from genret_jax.ids.types import ItemIdentifiers

N_ITEMS, N_USERS = 48, 60


def _toy():
  """48 items in 6 topics (4 words each); users walk within one topic."""
  rng = np.random.default_rng(0)
  words = [f"w{t}a w{t}b w{t}c" for t in range(6)]
  titles = np.array([f"item {i} {words[i % 6]} extra{i % 5}" for i in range(N_ITEMS)], object)
  catalog = Catalog(np.array([f"i{i}" for i in range(N_ITEMS)]),
                    {"title": titles, "brand": np.array([f"b{i % 3}" for i in range(N_ITEMS)],
                                                        object)})
  user, item, ts, beh, query = [], [], [], [], []
  for u in range(N_USERS):
    topic = u % 6
    for t in range(10):
      user.append(u)
      item.append(topic + 6 * rng.integers(N_ITEMS // 6))
      ts.append(t)
      s = t % 4 == 3
      beh.append(SEARCH if s else REC)
      query.append(f"w{topic}a" if s else "")
  events = Events(np.array(user, np.int32), np.array(item, np.int32), np.array(ts, np.int64),
                  np.array(beh, np.int8), np.array(query, object),
                  np.array([f"u{u}" for u in range(N_USERS)]))
  return catalog, events, leave_one_out(events)


def _config(scheme: str):
  c = base_config.get_base_config()
  c.ids.scheme = scheme
  c.ids.semantic.dim = 16
  c.ids.sasrec.update(dim=16, epochs=2, eval_every=1, max_len=8, batch_size=32)
  c.ids.rq_kmeans.update(levels=2, codebook_size=8, iterations=10)
  c.ids.rq_vae.update(levels=2, codebook_size=8, latent_dim=4, hidden=(16,), epochs=3,
                      batch_size=16, reseed_every=1)
  c.ids.gensar.update(codebook_size=8, latent_dim=4, hidden=(16,), epochs=2, batch_size=16,
                      eval_every=1, sinkhorn_iters=10, collision_rounds=3)
  return c


def _check_valid(table, n):
  assert table.codes.shape == (n, table.length) and table.codes.dtype == np.int32
  assert (table.codes >= 0).all()
  assert (table.codes < np.asarray(table.level_sizes)[None]).all()
  assert len(set(table.level_prefixes)) == table.length


@pytest.mark.parametrize("scheme", ["atomic", "rq_kmeans", "rq_vae", "gensar"])
def test_every_scheme_gives_every_item_a_valid_saved_reported_id(tmp_path, scheme):
  catalog, events, split = _toy()
  c = _config(scheme)
  # Collaborative embeddings from a file here (SASRec itself: tests/test_sasrec.py).
  np.save(tmp_path / "col.npy", np.random.default_rng(2).normal(size=(N_ITEMS, 6)))
  c.ids.collaborative.update(source="npy", path=str(tmp_path / "col.npy"))
  ids, entry = build.build_identifiers(c, catalog, events, split, str(tmp_path))
  assert ids.scheme == scheme
  for t in ids.tables():
    _check_valid(t, N_ITEMS)
  loaded = ItemIdentifiers.load(str(tmp_path / "ids" / scheme))
  np.testing.assert_array_equal(loaded.search.codes, ids.search.codes)
  np.testing.assert_array_equal(loaded.rec.codes, ids.rec.codes)
  assert (loaded.search is loaded.rec) == (scheme != "gensar")
  report = json.loads((tmp_path / "ids" / "report.json").read_text())
  for key in ("collision_rate", "collision_rate_after_dedup", "codebook_usage", "entropy",
              "build_seconds"):
    assert key in report[scheme]
  assert report[scheme]["collision_rate"] == entry["collision_rate"]
  if scheme in ("atomic", "rq_kmeans", "rq_vae"):
    # With dedup (the default) every ID is unique.
    assert stats.collision_rate(ids.search.codes) == 0.0
    assert entry["collision_rate_after_dedup"] == 0.0
  if scheme == "rq_kmeans":
    assert ids.search.level_prefixes == ("rqk0", "rqk1", "rqk_dup")
    assert np.all(np.diff(entry["recon_error"]) < 0)
  if scheme == "gensar":
    sem, col = ids.search, ids.rec
    assert (sem.name, col.name) == ("semantic", "collaborative")
    np.testing.assert_array_equal(sem.codes[:, :2], col.codes[:, :2])
    assert sem.level_prefixes[:2] == col.level_prefixes[:2] == ("sh0", "sh1")
    assert not set(sem.level_prefixes[2:]) & set(col.level_prefixes[2:])
    assert len(ids.extra_tokens()) == 6 * 8
    assert len(entry["codebook_usage"]) == 6
    for role in ("semantic", "collaborative"):
      t = entry["tables"][role]
      assert t["collision_rate_after_dedup"] <= t["collision_rate"]
    assert entry["embeddings"]["collaborative"]["source"] == "npy"


def test_report_merges_and_rebuild_replaces_atomically(tmp_path, capsys):
  catalog, events, split = _toy()
  build.build_identifiers(_config("atomic"), catalog, events, split, str(tmp_path))
  c = _config("rq_kmeans")
  c.ids.rq_kmeans.dedup = False
  ids, _ = build.build_identifiers(c, catalog, events, split, str(tmp_path))
  assert ids.search.length == 2
  c.ids.rq_kmeans.dedup = True
  ids, _ = build.build_identifiers(c, catalog, events, split, str(tmp_path))
  report = json.loads((tmp_path / "ids" / "report.json").read_text())
  assert set(report) == {"atomic", "rq_kmeans"}
  assert ItemIdentifiers.load(str(tmp_path / "ids" / "rq_kmeans")).search.length == 3
  assert sorted(os.listdir(tmp_path / "ids")) == ["atomic", "embeddings", "report.json",
                                                   "rq_kmeans"]
  out = capsys.readouterr().out
  assert "| rq_kmeans |" in out and "| atomic | 0.0000 | 0.0000 |" in out
  assert build.load_identifiers(str(tmp_path), "atomic").search.length == 1
  with pytest.raises(ConfigError, match="ids.scheme"):
    build.load_identifiers(str(tmp_path), "gensar")


def test_embedding_cache_is_reused_only_for_the_same_config(tmp_path):
  catalog, events, split = _toy()
  c = _config("rq_kmeans")
  _, e1 = build.build_identifiers(c, catalog, events, split, str(tmp_path))
  _, e2 = build.build_identifiers(c, catalog, events, split, str(tmp_path))
  assert "cached" not in e1["embeddings"]["semantic"] and e2["embeddings"]["semantic"]["cached"]
  c.ids.semantic.dim = 8
  _, e3 = build.build_identifiers(c, catalog, events, split, str(tmp_path))
  assert "cached" not in e3["embeddings"]["semantic"]
  assert e3["embeddings"]["semantic"]["dim"] == 8


def test_npy_collaborative_embeddings_are_used_verbatim(tmp_path):
  catalog, events, split = _toy()
  x = np.random.default_rng(1).normal(size=(N_ITEMS, 5)).astype(np.float32)
  np.save(tmp_path / "col.npy", x)
  c = _config("rq_kmeans")
  c.ids.rq_kmeans.embedding = "collaborative"
  c.ids.collaborative.update(source="npy", path=str(tmp_path / "col.npy"))
  _, entry = build.build_identifiers(c, catalog, events, split, str(tmp_path / "w"))
  assert entry["embeddings"]["collaborative"]["source"] == "npy"
  cached = np.load(tmp_path / "w" / "ids" / "embeddings" / "collaborative.npy")
  np.testing.assert_array_equal(cached, x)


@pytest.mark.parametrize("key,value,match", [
    ("scheme", "tiger", "config.ids.scheme"),
    ("rq_kmeans.embedding", "both", "config.ids.rq_kmeans.embedding"),
    ("rq_kmeans.levels", 0, "config.ids.rq_kmeans.levels"),
    ("rq_vae.codebook_size", 1, "config.ids.rq_vae.codebook_size"),
    ("gensar.collision_rounds", -1, "config.ids.gensar.collision_rounds"),
    ("semantic.source", "bert", "config.ids.semantic.source"),
    ("collaborative.source", "bpr", "config.ids.collaborative.source"),
    ("sasrec.loss", "hinge", "config.ids.sasrec.loss"),
])
def test_bad_config_is_a_config_error_naming_the_key(tmp_path, key, value, match):
  catalog, events, split = _toy()
  c = _config("rq_kmeans")
  obj = c.ids
  for part in key.split(".")[:-1]:
    obj = obj[part]
  obj[key.split(".")[-1]] = value
  with pytest.raises(ConfigError, match=match):
    build.build_identifiers(c, catalog, events, split, str(tmp_path))
  assert not (tmp_path / "ids").exists()   # nothing half-written


def test_bad_npy_is_a_data_error_naming_the_file_before_any_work(tmp_path):
  catalog, events, split = _toy()
  bad = tmp_path / "sem.npy"
  np.save(bad, np.zeros((N_ITEMS + 1, 4), np.float32))
  c = _config("gensar")
  c.ids.semantic.update(source="npy", path=str(bad))
  with pytest.raises(DataError, match=r"sem\.npy: shape: .*num_items=48"):
    build.build_identifiers(c, catalog, events, split, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
  c.ids.semantic.path = str(tmp_path / "missing.npy")
  with pytest.raises(DataError, match="missing.npy: embedding file does not exist"):
    build.build_identifiers(c, catalog, events, split, str(tmp_path / "w"))
  c.ids.semantic.update(source="t5", path=str(tmp_path / "no_ckpt"))
  with pytest.raises(ConfigError, match="config.ids.semantic.path"):
    build.build_identifiers(c, catalog, events, split, str(tmp_path / "w"))


def _build_from_raw(config, workdir: str):
  """What --mode=ids does after prepare: raw data -> leave-one-out split -> identifiers."""
  catalog, events = load_raw(config.data)
  return build.build_identifiers(config, catalog, events, leave_one_out(events), workdir)


def test_identifiers_from_simulated_data(tmp_path):
  c = _config("rq_kmeans")
  c.data.simulator.update(num_items=40, num_users=50, events_per_user=8, num_clusters=5,
                          items_per_query=4)
  ids, entry = _build_from_raw(c, str(tmp_path))
  assert ids.search.codes.shape[0] == 40
  assert entry["collision_rate_after_dedup"] == 0.0
  assert (tmp_path / "ids" / "rq_kmeans" / "ids.npz").is_file()


@pytest.mark.slow
def test_rq_kmeans_on_movielens_small(tmp_path, movielens_dir):
  c = _config("rq_kmeans")
  c.data.update(source="movielens", path=str(movielens_dir))
  c.ids.rq_kmeans.update(levels=3, codebook_size=32)
  ids, entry = _build_from_raw(c, str(tmp_path))
  n = ids.search.codes.shape[0]
  assert n > 9000
  _check_valid(ids.search, n)
  assert stats.collision_rate(ids.search.codes) == 0.0
  assert 0.0 < entry["collision_rate"] < 1.0
  assert min(entry["codebook_usage"][:3]) > 0.5


def _toy_build(inputs: schemes.SchemeInputs):
  """A toy scheme: two levels (item // 8, item % 8) from the semantic embedding's shape."""
  n = inputs.embedding("semantic").shape[0]
  codes = np.stack([np.arange(n) // 8, np.arange(n) % 8], 1)
  return schemes.residual_identifiers("toy", "toy", codes, max(8, -(-n // 8)), dedup=False)


def test_a_new_scheme_is_one_registry_line(tmp_path, monkeypatch):
  monkeypatch.setitem(schemes.SCHEMES, "toy", schemes.Scheme(_toy_build, lambda c: ("semantic",)))
  c = _config("atomic")
  c.ids.scheme = "toy"
  c.data.simulator.update(num_items=40, num_users=50, events_per_user=8, num_clusters=5,
                          items_per_query=4)
  ids, entry = _build_from_raw(c, str(tmp_path))
  assert ids.search.codes.tolist() == [[i // 8, i % 8] for i in range(40)]
  assert entry["collision_rate"] == 0.0 and entry["embeddings"]["semantic"]["source"] == "tfidf"
  assert build.load_identifiers(str(tmp_path), "toy").search.codes.shape == (40, 2)
  c.ids.scheme = "nope"
  with pytest.raises(ConfigError, match=r"config\.ids\.scheme: must be one of atomic, .*toy"):
    build.validate(c)
