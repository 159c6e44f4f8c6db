"""--mode=prepare: prepared dataset storage, reuse, atomic writes, histories, load."""

import glob
import io
import json
import os

import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf

from genret_jax.config import get_base_config
from genret_jax.data import negatives, prepare, prepared
from genret_jax.data.readers import load_raw
from genret_jax.data.schema import REC, SEARCH, Events
from genret_jax.data.splits import TEST, TRAIN, VALID, leave_one_out
from genret_jax.errors import ConfigError, DataError
from genret_jax.tasks import config as tasks_config
from genret_jax.tasks import vocab as vocab_lib


def tiny_config():
  c = get_base_config()
  s = c.data.simulator
  s.num_users, s.num_items, s.num_clusters, s.events_per_user = 50, 200, 10, 12
  c.data.max_history = 6
  c.vocab.sp_vocab_size = 300
  return c


@pytest.fixture(scope="module")
def prepared_tiny(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("tiny"))
  c = tiny_config()
  return c, workdir, prepare.prepare(c, workdir, sp_model=vocab_lib.sentencepiece_model(c))


def test_prepare_round_trips_the_canonical_tables(prepared_tiny):
  c, _, path = prepared_tiny
  catalog, events = load_raw(c.data)
  ds = prepared.load(path)
  np.testing.assert_array_equal(ds.catalog.item_ids, catalog.item_ids)
  assert list(ds.catalog.fields) == list(catalog.fields)
  for f in catalog.fields:
    np.testing.assert_array_equal(ds.catalog.fields[f], catalog.fields[f])
  for f in ("user", "item", "timestamp", "behaviour", "query", "user_ids"):
    np.testing.assert_array_equal(getattr(ds.events, f), getattr(events, f))
  assert ds.events.synthetic_time == events.synthetic_time
  split = leave_one_out(events)
  np.testing.assert_array_equal(ds.split, split)
  eval_events, neg = negatives.sample_candidates(events, split, catalog.texts(), c.data.seed)
  np.testing.assert_array_equal(ds.eval_events, eval_events)
  np.testing.assert_array_equal(ds.negatives, neg)
  np.testing.assert_array_equal(ds.candidates()[:, 0], events.item[eval_events])
  m = ds.manifest
  assert m["counts"]["users"] == events.num_users and m["counts"]["items"] == 200
  assert m["counts"]["rec_events"] == int((events.behaviour == REC).sum())
  assert m["counts"]["per_split"]["test"]["search"] == int(
      ((split == TEST) & (events.behaviour == SEARCH)).sum())
  assert m["config"]["data"]["max_history"] == 6
  files = {os.path.basename(p): prepared.file_sha256(p)
           for p in glob.glob(os.path.join(path, "*")) if not p.endswith("manifest.json")}
  assert files == m["files"]
  assert m["content_hash"] == prepared.content_hash(files)
  counts = prepared.item_train_counts(path)
  train = split == TRAIN
  np.testing.assert_array_equal(counts[SEARCH], np.bincount(
      events.item[train & (events.behaviour == SEARCH)], minlength=200))


def test_prints_statistics_and_reuses_same_config(prepared_tiny, capsys):
  c, workdir, path = prepared_tiny
  mtime = os.path.getmtime(os.path.join(path, "manifest.json"))
  assert prepare.prepare(c, workdir, sp_model=vocab_lib.sentencepiece_model(c)) == path
  out = capsys.readouterr().out
  assert "reusing prepared dataset" in out
  manifest = prepared.read_manifest(path)
  assert f"| users                    | {manifest['counts']['users']:>10,} |" in out
  assert "| validation search events |" in out and "| distinct queries" in out
  assert os.path.getmtime(os.path.join(path, "manifest.json")) == mtime


def test_changed_config_rewrites_and_crash_keeps_old(tmp_path, monkeypatch, capsys):
  c = tiny_config()
  path = prepare.prepare(c, str(tmp_path), sp_model=vocab_lib.sentencepiece_model(c))
  old = prepared.read_manifest(path)
  c.data.max_history = 3

  def boom(*args, **kwargs):
    raise RuntimeError("disk full")

  monkeypatch.setattr(prepared, "write_users", boom)
  with pytest.raises(RuntimeError, match="disk full"):
    prepare.prepare(c, str(tmp_path), sp_model=vocab_lib.sentencepiece_model(c))
  assert prepared.read_manifest(path) == old              # old dataset untouched, complete
  assert sorted(os.listdir(tmp_path)) == ["prepared"]     # no temp dir left behind
  monkeypatch.undo()
  prepare.prepare(c, str(tmp_path), sp_model=vocab_lib.sentencepiece_model(c))
  new = prepared.read_manifest(path)
  assert new["config_hash"] != old["config_hash"] and new["max_history"] == 3
  assert "prepared dataset written" in capsys.readouterr().out
  assert sorted(os.listdir(tmp_path)) == ["prepared"]


def test_crash_on_fresh_workdir_writes_nothing(tmp_path, monkeypatch):
  monkeypatch.setattr(prepared, "write_event_shard", lambda *a, **k: 1 / 0)
  with pytest.raises(ZeroDivisionError):
    c = tiny_config()
    prepare.prepare(c, str(tmp_path), sp_model=vocab_lib.sentencepiece_model(c))
  assert os.listdir(tmp_path) == []


def test_bad_config_fails_before_writing(tmp_path):
  c = tiny_config()
  c.vocab.sp_model = str(tmp_path / "missing.model")
  with pytest.raises(ConfigError, match="config.vocab.sp_model: no such file"):
    prepare.prepare(c, str(tmp_path / "w"), sp_model=vocab_lib.sentencepiece_model(c))
  c = tiny_config()
  c.data.max_history = 0
  with pytest.raises(ConfigError, match="config.data.max_history"):
    prepare.prepare(c, str(tmp_path / "w"), sp_model=vocab_lib.sentencepiece_model(c))
  assert not os.path.exists(tmp_path / "w" / "prepared")


def test_given_sp_model_is_copied(tmp_path):
  writer = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(["red lipstick", "blue shoes"] * 50), model_writer=writer,
      vocab_size=60, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
      minloglevel=2)
  (tmp_path / "t5.model").write_bytes(writer.getvalue())
  c = tiny_config()
  c.vocab.sp_model = str(tmp_path / "t5.model")
  path = prepare.prepare(c, str(tmp_path / "w"), sp_model=vocab_lib.sentencepiece_model(c))
  assert open(os.path.join(path, "spm.model"), "rb").read() == writer.getvalue()


def test_load_errors(tmp_path, prepared_tiny):
  with pytest.raises(DataError, match=r"manifest.json: missing: not a \(complete\)"):
    prepared.load(str(tmp_path))
  _, _, path = prepared_tiny
  manifest = prepared.read_manifest(path)
  manifest["files"]["gone.tfrecord-00000-of-00001"] = "0"
  (tmp_path / "manifest.json").write_text(json.dumps(manifest))
  with pytest.raises(DataError, match="listed in manifest.json but missing"):
    prepared.load(str(tmp_path))


def test_load_checks_the_candidate_count(tmp_path, prepared_tiny):
  import shutil
  _, _, path = prepared_tiny
  copy = tmp_path / "p"
  shutil.copytree(path, copy)
  manifest = prepared.read_manifest(str(copy))
  manifest["num_negatives"] = 98            # the files hold 1 + 99 per evaluation event
  (copy / "manifest.json").write_text(json.dumps(manifest))
  with pytest.raises(DataError, match=r"candidates: event \d+ has 100 candidates, expected 99"):
    prepared.load(str(copy))


def test_shards_end_at_user_boundaries(tmp_path):
  c = tiny_config()
  catalog, events = load_raw(c.data)
  phases = []
  path = prepare.write_prepared(catalog, events, c, str(tmp_path / "p"), examples_per_shard=100,
                                verbose=False, on_phase=phases.append,
                                sp_model=vocab_lib.sentencepiece_model(c))
  assert tuple(phases) == prepare.PHASES
  train_files = sorted(glob.glob(prepared.split_patterns(path)["train"]))
  assert len(train_files) > 2
  users_per_file = []
  for f in train_files:
    users = {tf.train.Example.FromString(r.numpy()).features.feature["user"].int64_list.value[0]
             for r in tf.data.TFRecordDataset(f)}
    users_per_file.append(users)
  for a in range(len(users_per_file)):
    for b in range(a + 1, len(users_per_file)):
      assert not users_per_file[a] & users_per_file[b]
  ds = prepared.load(path)
  np.testing.assert_array_equal(ds.events.item, events.item)


def test_histories_use_strictly_earlier_times():
  # user 0: t=0 rec a, t=1 search b, t=1 rec b (same interaction), t=2 rec c, t=3 search d
  # user 1: t=5 rec e, t=6 rec f
  ev = Events(user=np.array([0, 0, 0, 0, 0, 1, 1], np.int32),
              item=np.array([0, 1, 1, 2, 3, 4, 5], np.int32),
              timestamp=np.array([0, 1, 1, 2, 3, 5, 6], np.int64),
              behaviour=np.array([REC, SEARCH, REC, REC, SEARCH, REC, REC], np.int8),
              query=np.array(["", "q", "", "", "r", "", ""], dtype=object),
              user_ids=np.array(["a", "b"], dtype=object))
  h = prepare.histories(ev, 2)
  np.testing.assert_array_equal(h["hist"], [[-1, -1], [-1, 0], [-1, 0], [1, 2], [2, 3],
                                            [-1, -1], [-1, 5]])
  np.testing.assert_array_equal(h["rec_hist"], [[-1, -1], [-1, 0], [-1, 0], [0, 2], [2, 3],
                                                [-1, -1], [-1, 5]])


def test_histories_in_chunks_match_a_brute_force_loop():
  rng = np.random.default_rng(3)
  n = 300
  user = np.sort(rng.integers(0, 12, n)).astype(np.int32)
  ts = np.concatenate([np.sort(rng.integers(0, 30, (user == u).sum())) for u in range(12)])
  ev = Events(user=user, item=rng.integers(0, 50, n).astype(np.int32), timestamp=ts,
              behaviour=rng.integers(0, 2, n).astype(np.int8),
              query=np.full(n, "q", dtype=object),
              user_ids=np.array([str(u) for u in range(12)], dtype=object))
  h = 4
  want = {"hist": np.full((n, h), -1), "rec_hist": np.full((n, h), -1)}
  for e in range(n):
    prev = [j for j in range(n) if user[j] == user[e] and ts[j] < ts[e]]
    for name, sel in (("hist", prev), ("rec_hist", [j for j in prev if ev.behaviour[j] == REC])):
      sel = sel[-h:]
      if sel:
        want[name][e, h - len(sel):] = sel
  for chunk in (1, 7, 64, 1 << 18):
    got = prepare.histories(ev, h, chunk=chunk)
    for name in want:
      assert got[name].dtype == np.int64
      np.testing.assert_array_equal(got[name], want[name])


def test_sentencepiece_corpus_is_a_seeded_sample_above_the_cap():
  texts = [f"item {i} word{i % 7}" for i in range(300)] + ["caf\u00e9 \u00fcber"]
  ev = Events(user=np.zeros(3, np.int32), item=np.arange(3, dtype=np.int32),
              timestamp=np.arange(3), behaviour=np.array([REC, SEARCH, SEARCH], np.int8),
              query=np.array(["", "blue mug", "zq"], dtype=object),
              user_ids=np.array(["a"], dtype=object))
  whole = prepare._corpus(texts, ev, seed=0)            # under the cap: unchanged
  assert whole == texts + ["blue mug", "zq"]
  small = prepare._corpus(texts, ev, seed=0, max_sentences=50)
  assert small == prepare._corpus(texts, ev, seed=0, max_sentences=50)
  assert small != prepare._corpus(texts, ev, seed=1, max_sentences=50)
  sample, chars = small[:50], small[50:]
  assert set(sample) <= set(texts + ["blue mug", "zq"])
  assert [texts.index(t) for t in sample if t in texts] == sorted(
      texts.index(t) for t in sample if t in texts)   # corpus order kept
  # Every character of the full corpus is still in the training text.
  assert set("".join(texts) + "blue mugzq") - {" "} <= set("".join(chars))
  model = spm.SentencePieceProcessor(model_proto=vocab_lib.train_sentencepiece(small, 80))
  assert 2 not in model.encode(" caf\u00e9 \u00fcber zq")   # no unk
  # The model stored with the data (tasks.vocab) also learns every style's prompt texts.
  c = get_base_config()
  c.vocab.sp_vocab_size = 200
  stored = spm.SentencePieceProcessor(model_proto=vocab_lib.sentencepiece_model(c)(small))
  for prompt in tasks_config.default_prompt_texts():
    assert 2 not in stored.encode(" " + prompt), prompt


def test_item_ranks_cover_each_train_group():
  rng = np.random.default_rng(0)
  n = 400
  ev = Events(user=np.sort(rng.integers(0, 20, n)).astype(np.int32),
              item=rng.integers(0, 15, n).astype(np.int32), timestamp=np.arange(n),
              behaviour=rng.integers(0, 2, n).astype(np.int8),
              query=np.full(n, "q", dtype=object),
              user_ids=np.array([str(u) for u in range(20)], dtype=object))
  split = leave_one_out(ev)
  ranks = prepare.item_ranks(ev, split, seed=0)
  assert (ranks[split != TRAIN] == -1).all()
  for b in (REC, SEARCH):
    for i in range(15):
      sel = (split == TRAIN) & (ev.behaviour == b) & (ev.item == i)
      assert sorted(ranks[sel].tolist()) == list(range(sel.sum()))
  assert not np.array_equal(ranks, prepare.item_ranks(ev, split, seed=1))
  assert set(np.unique(split).tolist()) <= {TRAIN, VALID, TEST}
