"""seqio Tasks / Mixtures: batches decode back to the prepared events exactly, no leakage."""

import csv
import re

import numpy as np
import pytest
import seqio
import tensorflow as tf

from genret_jax.config import get_base_config
from genret_jax.data import prepare, prepared
from genret_jax.data.schema import REC, SEARCH
from genret_jax.data.splits import TRAIN
from genret_jax.errors import ConfigError
from genret_jax.ids.types import IdTable, ItemIdentifiers, atomic_ids
from genret_jax.tasks import config as tasks_config
from genret_jax.tasks import formatting, kinds, register, registry, vocab

LONG = {"inputs": 1024, "targets": 512}


def tiny_config():
  c = get_base_config()
  s = c.data.simulator
  s.num_users, s.num_items, s.num_clusters, s.events_per_user = 40, 200, 10, 12
  c.data.max_history = 5
  c.vocab.sp_vocab_size = 400
  c.tasks.history_separator = "; "     # the reference Parser splits histories on it
  return c


def dual_ids(num_items: int) -> ItemIdentifiers:
  """GenSAR-like: a shared first level, different second levels (unique per item)."""
  i = np.arange(num_items)
  groups = -(-num_items // 16)
  sem = IdTable("semantic", np.stack([i // 16, i % 16], 1).astype(np.int32), ("s0", "s1"),
                (groups, 16))
  col = IdTable("collaborative", np.stack([i // 16, (i * 5) % 16], 1).astype(np.int32),
                ("s0", "c1"), (groups, 16))
  return ItemIdentifiers("gensar", sem, col)


def _subset_movielens(src, dst, num_users=8):
  rows = {n: list(csv.DictReader(open(src / n, encoding="utf-8")))
          for n in ("ratings.csv", "tags.csv", "movies.csv")}
  n_tags = {}
  for r in rows["tags.csv"]:
    n_tags[r["userId"]] = n_tags.get(r["userId"], 0) + 1
  tag_users = {u for u, n in n_tags.items() if n >= 5}
  n_ratings = {}
  for r in rows["ratings.csv"]:
    n_ratings[r["userId"]] = n_ratings.get(r["userId"], 0) + 1
  users = sorted(tag_users, key=lambda u: (n_ratings.get(u, 0), u))[:num_users]
  keep = {n: [r for r in rows[n] if r["userId"] in users] for n in ("ratings.csv", "tags.csv")}
  movies = {r["movieId"] for n in keep for r in keep[n]}
  keep["movies.csv"] = [r for i, r in enumerate(rows["movies.csv"])
                        if r["movieId"] in movies or i < 300]
  for n, rs in keep.items():
    with open(dst / n, "w", newline="", encoding="utf-8") as f:
      w = csv.DictWriter(f, fieldnames=list(rows[n][0]))
      w.writeheader()
      w.writerows(rs)


def _subset_amazon(src, dst, num_users=60):
  lines = open(src / "Beauty.txt").read().splitlines()[:num_users]
  (dst / "Beauty.txt").write_text("\n".join(lines) + "\n")
  items = {x for line in lines for x in line.split()[1:]}
  attrs = open(src / "derived_item_attributes.tsv", encoding="utf-8").read().splitlines()
  kept = [attrs[0]] + [a for i, a in enumerate(attrs[1:]) if a.split("\t")[0] in items or i < 200]
  (dst / "derived_item_attributes.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("sim"))
  c = tiny_config()
  prepare.prepare(c, workdir, sp_model=vocab.sentencepiece_model(c))
  return c, workdir


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
  from tests.conftest import shared_dataset  # pylint: disable=g-import-not-at-top
  src = shared_dataset("ml-latest-small")
  raw = tmp_path_factory.mktemp("ml_raw")
  _subset_movielens(src, raw)
  c = tiny_config()
  c.data.source, c.data.path = "movielens", str(raw)
  c.data.movielens.min_tag_users = 1      # the subset has few users per tag
  workdir = str(tmp_path_factory.mktemp("ml"))
  prepare.prepare(c, workdir, sp_model=vocab.sentencepiece_model(c))
  return c, workdir


@pytest.fixture(scope="module")
def amazon(tmp_path_factory):
  from tests.conftest import shared_dataset  # pylint: disable=g-import-not-at-top
  src = shared_dataset("amazon-beauty")
  raw = tmp_path_factory.mktemp("amazon_raw")
  _subset_amazon(src, raw)
  c = tiny_config()
  c.data.source, c.data.path = "amazon", str(raw)
  workdir = str(tmp_path_factory.mktemp("amazon"))
  prepare.prepare(c, workdir, sp_model=vocab.sentencepiece_model(c))
  return c, workdir


# --- an independent reference: what every example must say ---------------------------

def reference_history(events, e, h):
  """The last h events of e's user with a strictly earlier timestamp (plain Python)."""
  mine = [j for j in range(events.num_events)
          if events.user[j] == events.user[e] and events.timestamp[j] < events.timestamp[e]]
  mine.sort(key=lambda j: (events.timestamp[j], j))
  return mine[-h:] if h else []


def event_keys(ds, h):
  """kind -> set of keys of every TRAIN example it may produce."""
  ev = ds.events
  keys = {k: set() for k in ("rec", "search", "gensar_rec", "gensar_search", "next_query")}
  for e in np.flatnonzero(ds.split == TRAIN):
    hist = reference_history(ev, e, 10 ** 9)
    mixed = tuple((int(ev.behaviour[j]), int(ev.item[j]), str(ev.query[j])) for j in hist[-h:])
    rec = tuple(int(ev.item[j]) for j in hist if ev.behaviour[j] == REC)[-h:]
    item, query = int(ev.item[e]), str(ev.query[e])
    if ev.behaviour[e] == REC:
      keys["rec"].add((item, rec))
      keys["gensar_rec"].add((item, mixed))
    else:
      keys["search"].add((item, query))
      keys["gensar_search"].add((item, query, mixed))
      keys["next_query"].add((query, mixed))
  return keys


class Parser:
  """Decoded text -> (kind, key) using the prompts and ID tables."""

  def __init__(self, config, ids):
    self.sep = config.tasks.history_separator
    self.prompts = tasks_config.prompt_templates(config.tasks)
    self.lookup = {}
    for role, table in (("search", ids.search), ("rec", ids.rec)):
      self.lookup[role] = {s: i for i, s in enumerate(formatting.id_strings(table))}
      assert len(self.lookup[role]) == table.codes.shape[0]

  def _template_regex(self, template):
    out = ""
    for literal, name, _, _ in __import__("string").Formatter().parse(template):
      out += re.escape(literal)
      if name is not None:
        out += f"(?P<{name}>.*)"
    return re.compile(out, re.S)

  def _history(self, text, plain):
    if not text:
      return ()
    out = []
    for element in text.split(self.sep):
      if plain:
        out.append(self.lookup["rec"][element])
        continue
      m = re.fullmatch(r"<rec_item>((?:<[a-z0-9]+_\d+>)+)", element)
      if m:
        out.append((REC, self.lookup["rec"][m.group(1)], ""))
        continue
      m = re.fullmatch(r"<src_query> (.*) <src_item>((?:<[a-z0-9]+_\d+>)+)", element, re.S)
      assert m, element
      out.append((SEARCH, self.lookup["search"][m.group(2)], m.group(1)))
    return tuple(out)

  def parse(self, inputs, targets):
    for kind, template in self.prompts.items():
      m = self._template_regex(template).fullmatch(inputs)
      if not m:
        continue
      f = m.groupdict()
      if kind == "rec" and not targets.startswith("<rec_item>"):
        return kind, (self.lookup["rec"][targets], self._history(f["history"], True))
      if kind == "search" and not targets.startswith("<src_item>"):
        return kind, (self.lookup["search"][targets], f["query"])
      if kind == "gensar_rec" and targets.startswith("<rec_item>"):
        return kind, (self.lookup["rec"][targets[len("<rec_item>"):]],
                      self._history(f["history"], False))
      if kind == "gensar_search" and targets.startswith("<src_item>"):
        return kind, (self.lookup["search"][targets[len("<src_item>"):]], f["query"],
                      self._history(f["history"], False))
      if kind == "next_query" and targets.startswith("<src_query> "):
        return kind, (targets[len("<src_query> "):], self._history(f["history"], False))
      if kind == "text2id":
        role = "search" if targets.startswith("<src_item>") else "rec"
        return kind, (self.lookup[role][targets[len("<src_item>"):]], f["content"])
      if kind == "id2text":
        role = "search" if f["item"].startswith("<src_item>") else "rec"
        return kind, (self.lookup[role][f["item"][len("<src_item>"):]], targets)
    raise AssertionError(f"no prompt matches: {inputs!r} -> {targets!r}")


def check_mixture_batch(config, workdir, ids, mixture, n=48):
  config.tasks.mixture = mixture
  reg = register(config, workdir, ids)
  vocab = reg["vocabulary"]
  ds = prepared.load(f"{workdir}/prepared")
  keys = event_keys(ds, config.data.max_history)
  texts = ds.catalog.texts()
  parser = Parser(config, ids)
  data = seqio.get_mixture_or_task(reg["mixture"]).get_dataset(LONG, split="train",
                                                               shuffle=False, seed=0)
  seen = set()
  for ex in data.take(n).as_numpy_iterator():
    assert ex["inputs"][-1] == 1 and ex["targets"][-1] == 1          # EOS, nothing trimmed
    kind, key = parser.parse(vocab.decode(ex["inputs"]), vocab.decode(ex["targets"]))
    seen.add(kind)
    if kind in ("text2id", "id2text"):
      assert key[1] == texts[key[0]]
    else:
      assert key in keys[kind], (kind, key)
  return seen


@pytest.mark.parametrize("source", [
    "sim", pytest.param("movielens", marks=pytest.mark.slow),
    pytest.param("amazon", marks=pytest.mark.slow)])
def test_joint_and_gensar_batches_decode_to_source_events(source, request):
  config, workdir = request.getfixturevalue(source)
  num_items = prepared.read_manifest(f"{workdir}/prepared")["counts"]["items"]
  assert check_mixture_batch(config, workdir, atomic_ids(num_items), "joint") == {"rec",
                                                                                 "search"}
  ids = dual_ids(num_items) if source == "sim" else atomic_ids(num_items)
  seen = check_mixture_batch(config, workdir, ids, "gensar", n=96)
  assert {"gensar_rec", "gensar_search", "next_query"} <= seen


@pytest.mark.parametrize("source", ["sim", pytest.param("amazon", marks=pytest.mark.slow)])
def test_eval_examples_never_contain_their_target(source, request):
  """Eval inputs hold exactly the user's events with a strictly earlier timestamp (Amazon:
  the rec and search events of one interaction share a time and so never see each other)."""
  config, workdir = request.getfixturevalue(source)
  config.tasks.mixture = "gensar"
  ids = dual_ids(200) if source == "sim" else atomic_ids(
      prepared.read_manifest(f"{workdir}/prepared")["counts"]["items"])
  reg = register(config, workdir, ids)
  vocab = reg["vocabulary"]
  ds = prepared.load(f"{workdir}/prepared")
  ev, h = ds.events, config.data.max_history
  parser = Parser(config, ids)
  cand = dict(zip(ds.eval_events.tolist(), ds.candidates()))
  count = 0
  for behaviour, name in reg["eval_tasks"].items():
    for split in ("validation", "test"):
      data = seqio.get_mixture_or_task(name).get_dataset(LONG, split=split, shuffle=False)
      for ex in data.as_numpy_iterator():
        e = int(ex["event"])
        assert ds.split[e] != TRAIN and ev.behaviour[e] == (REC if behaviour == "rec" else SEARCH)
        _, key = parser.parse(vocab.decode(ex["inputs"]), vocab.decode(ex["targets"]))
        hist = reference_history(ev, e, h)
        assert key[0] == ex["target_item"] == ev.item[e]
        assert key[-1] == tuple((int(ev.behaviour[j]), int(ev.item[j]), str(ev.query[j]))
                                for j in hist)
        assert e not in hist and all(ev.timestamp[j] < ev.timestamp[e] for j in hist)
        np.testing.assert_array_equal(ex["candidates"], cand[e])
        assert ex["candidates"][0] == ev.item[e] and len(set(ex["candidates"])) == 100
        count += 1
  assert count == len(ds.eval_events)


def test_long_histories_drop_oldest_elements(sim):
  config, workdir = sim
  config.tasks.mixture = "gensar"
  config.tasks.prompt_style = "full"          # a prompt text around the history
  try:
    reg = register(config, workdir, atomic_ids(200))
  finally:
    config.tasks.prompt_style = get_base_config().tasks.prompt_style
  vocab = reg["vocabulary"]
  suffix = ". Please recommend the next item the user might want to click on."
  budget = len(vocab.encode("Here is the user's history " + suffix)) + 12   # room for ~3
  data = seqio.get_mixture_or_task(reg["eval_tasks"]["rec"]).get_dataset(
      {"inputs": budget + 1, "targets": 8}, split="test", shuffle=False)
  full = seqio.get_mixture_or_task(reg["eval_tasks"]["rec"]).get_dataset(
      LONG, split="test", shuffle=False)
  dropped = 0
  for short, long in zip(data.as_numpy_iterator(), full.as_numpy_iterator()):
    assert len(short["inputs"]) <= budget + 1
    text, long_text = vocab.decode(short["inputs"]), vocab.decode(long["inputs"])
    assert text.endswith(suffix)
    assert text.startswith("Here is the user's history ")
    kept = text[len("Here is the user's history "):-len(suffix)]
    assert long_text.endswith(kept + suffix)                      # the most recent ones
    assert short["history_length"] <= long["history_length"]
    dropped += short["history_length"] < long["history_length"]
  assert dropped > 0


def test_cap_per_item_and_rates(sim):
  config, workdir = sim
  config.tasks.mixture = "joint"
  config.tasks.cap_behaviour, config.tasks.cap_per_item = "search", 1
  try:
    reg = register(config, workdir, atomic_ids(200))
    counts = prepared.item_train_counts(f"{workdir}/prepared")
    items = [int(ex["target_item"]) for ex in seqio.get_mixture_or_task(
        reg["tasks"]["search"]).get_dataset(LONG, split="train", shuffle=False)
        .as_numpy_iterator()]
    assert sorted(items) == np.flatnonzero(counts[SEARCH] > 0).tolist()
    assert reg["example_counts"]["search"] == len(items)
    assert reg["example_counts"]["rec"] == counts[REC].sum()        # rec not capped
    mix = seqio.get_mixture_or_task(reg["mixture"])
    assert mix.get_rate(seqio.get_mixture_or_task(reg["tasks"]["search"])) == len(items)
    n_eval = sum(1 for _ in seqio.get_mixture_or_task(reg["tasks"]["search"]).get_dataset(
        LONG, split="test", shuffle=False).as_numpy_iterator())
    ds = prepared.load(f"{workdir}/prepared")
    assert n_eval == int(((ds.split == 2) & (ds.events.behaviour == SEARCH)).sum())
    config.tasks.rates.rec = 3.0
    reg = register(config, workdir, atomic_ids(200))
    mix = seqio.get_mixture_or_task(reg["mixture"])
    assert mix.get_rate(seqio.get_mixture_or_task(reg["tasks"]["rec"])) == 3.0
  finally:
    config.tasks.cap_behaviour, config.tasks.cap_per_item = "", 0
    config.tasks.rates.rec = -1.0


def test_small_event_tasks_are_read_once_then_served_from_memory(sim):
  """A task's source holds only its behaviour's events and reports their number, so a
  task under seqio's in-memory limit replays later epochs without the event files."""
  import glob  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  config, workdir = sim
  mixture, config.tasks.mixture = config.tasks.mixture, "search_only"
  try:
    reg = register(config, workdir, atomic_ids(200))
  finally:
    config.tasks.mixture = mixture
  task = seqio.get_mixture_or_task(reg["tasks"]["search"])
  ds = prepared.load(f"{workdir}/prepared")
  train_search = (ds.split == TRAIN) & (ds.events.behaviour == SEARCH)
  n = int(train_search.sum())
  assert task.source.num_input_examples("train") == n == reg["example_counts"]["search"]
  assert 0 < n < 10_000
  # Unshuffled: seqio's shuffle buffer comes after the repeat and would mix epochs.
  it = task.get_dataset(LONG, split="train", shuffle=False, num_epochs=None).as_numpy_iterator()
  epoch1 = sorted(int(next(it)["event"]) for _ in range(n))
  assert epoch1 == np.flatnonzero(train_search).tolist()
  files = glob.glob(f"{workdir}/prepared/train.tfrecord-*")
  for f in files:
    os.rename(f, f + ".away")
  try:
    epoch2 = sorted(int(next(it)["event"]) for _ in range(n))
  finally:
    for f in files:
      os.rename(f + ".away", f)
  assert epoch2 == epoch1


def test_registration_is_idempotent_and_named_per_dataset_and_ids(sim):
  config, workdir = sim
  config.tasks.mixture = "joint"
  a = register(config, workdir, atomic_ids(200))
  b = register(config, workdir, atomic_ids(200))
  assert a["tasks"] == b["tasks"] and a["mixture"] == b["mixture"]
  assert seqio.TaskRegistry.get(a["tasks"]["rec"]).name == a["tasks"]["rec"]
  c = register(config, workdir, dual_ids(200))
  assert c["tasks"]["rec"] != a["tasks"]["rec"] and "text2id_rec" in c["tasks"]
  assert a["eval_prefix"] == {"rec": "", "search": ""}
  config.tasks.mixture = "gensar"
  d = register(config, workdir, dual_ids(200))
  assert d["eval_prefix"] == {"rec": "<rec_item>", "search": "<src_item>"}
  config.tasks.mixture = "joint"


@pytest.mark.parametrize("key,value,match", [
    ("mixture", "both", "config.tasks.mixture"),
    ("cap_behaviour", "music", "config.tasks.cap_behaviour"),
    ("cap_per_item", -1, "config.tasks.cap_per_item"),
    ("prompts.rec", "Recommend next.", r"config.tasks.prompts.rec: needs \['history'\]"),
    ("prompts.search", "{query} {history}", "config.tasks.prompts.search"),
    ("prompts.id2text", "{item", "config.tasks.prompts.id2text: bad template"),
    ("prompt_style", "long", "config.tasks.prompt_style: 'long' is not one of"),
    ("rates.search", float("inf"), "config.tasks.rates.search: must be finite"),
])
def test_bad_tasks_config_fails_naming_the_key(sim, key, value, match):
  config, workdir = sim
  c = tiny_config()
  block = c.tasks
  *path, last = key.split(".")
  for p in path:
    block = block[p]
  block[last] = value
  with pytest.raises(ConfigError, match=match):
    register(c, workdir, atomic_ids(200))


def test_mismatched_ids_or_missing_dataset_fail(sim, tmp_path):
  config, workdir = sim
  with pytest.raises(ConfigError, match="config.ids.scheme: search table has 10 items"):
    register(config, workdir, atomic_ids(10))
  with pytest.raises(ConfigError, match="holds no prepared dataset"):
    register(config, str(tmp_path), atomic_ids(200))


def test_unknown_task_config_keys_fail():
  c = get_base_config()
  c.lock()
  with pytest.raises(AttributeError):
    c.tasks.prompts.unknown = "x"
  with pytest.raises(AttributeError):
    c.tasks.rates.unknown = 1.0
  with pytest.raises(AttributeError):
    c.vocab.unknown = 1


def test_feature_converter_packs_and_drops_eval_features(sim):
  from genret_jax.tasks.registry import feature_converter  # pylint: disable=g-import-not-at-top
  config, workdir = sim
  config.tasks.mixture = "joint"
  reg = register(config, workdir, atomic_ids(200))
  lengths = {"inputs": 256, "targets": 8}
  plain = seqio.get_dataset(reg["eval_tasks"]["search"], lengths, dataset_split="test",
                            shuffle=False, feature_converter=feature_converter(config))
  ex = next(plain.as_numpy_iterator())
  assert set(ex) == {"encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens",
                     "decoder_loss_weights"}
  config.tasks.pack = True
  try:
    packed = seqio.get_dataset(reg["eval_tasks"]["search"], lengths, dataset_split="test",
                               shuffle=False,
                               feature_converter=feature_converter(config))
    ex = next(packed.as_numpy_iterator())
    assert ex["encoder_segment_ids"].max() > 1          # several examples in one row
  finally:
    config.tasks.pack = False


def _task_texts(reg, kind, split, n=40):
  """[(inputs ids, targets ids, decoded inputs, decoded targets)] of the first n examples."""
  vocab = reg["vocabulary"]
  data = seqio.get_mixture_or_task(reg["tasks"][kind]).get_dataset(LONG, split=split,
                                                                    shuffle=False)
  return [(ex["inputs"], ex["targets"], vocab.decode(ex["inputs"]), vocab.decode(ex["targets"]))
          for ex in data.take(n).as_numpy_iterator()]


def test_without_behaviour_tokens_no_task_writes_them_and_decoding_forces_none(sim):
  """GenSAR's ablation: tasks.behaviour_tokens=False removes <rec_item>/<src_query>/<src_item>
  from every input and target (the text is otherwise the same) and the forced decoding prefix."""
  from genret_jax.tasks.vocab import BEHAVIOUR_TOKENS  # pylint: disable=g-import-not-at-top
  config, workdir = sim
  config.tasks.mixture = "gensar"
  ids = dual_ids(200)
  with_tokens = register(config, workdir, ids)
  config.tasks.behaviour_tokens = False
  try:
    without = register(config, workdir, ids)
  finally:
    config.tasks.behaviour_tokens = True
  assert with_tokens["eval_prefix"] == {"rec": "<rec_item>", "search": "<src_item>"}
  assert without["eval_prefix"] == {"rec": "", "search": ""}        # nothing forced first
  assert without["tasks"]["gensar_rec"] != with_tokens["tasks"]["gensar_rec"]
  vocab = without["vocabulary"]
  token_ids = [vocab.token_id(t) for t in BEHAVIOUR_TOKENS]
  assert vocab.vocab_size == with_tokens["vocabulary"].vocab_size  # same ids, tokens unused
  strip = lambda s: s.replace("<src_query> ", "").replace("<src_item>", "").replace(  # noqa
      "<rec_item>", "")
  rec_ids, search_ids = vocab.item_ids(ids.rec), vocab.item_ids(ids.search)
  seen_on = 0
  for kind in without["tasks"]:
    if kind in ("rec", "search"):
      continue                                  # Penha tasks: never had behaviour tokens
    splits = ("train", "test") if kind in ("gensar_rec", "gensar_search") else ("train",)
    for split in splits:
      on, off = _task_texts(with_tokens, kind, split), _task_texts(without, kind, split)
      assert len(on) == len(off) > 0, (kind, split)
      for (on_in, on_tgt, on_text, on_target), (in_ids, tgt_ids, text, target) in zip(on, off):
        assert not np.isin(in_ids, token_ids).any() and not np.isin(tgt_ids, token_ids).any()
        assert not any(t in text + target for t in BEHAVIOUR_TOKENS)
        assert (text, target) == (strip(on_text), strip(on_target)), kind
        seen_on += np.isin(np.concatenate([on_in, on_tgt]), token_ids).any()
      if kind in ("gensar_rec", "gensar_search"):
        # the target is exactly the item's ID tokens + EOS: what the unprefixed trie decodes
        data = seqio.get_mixture_or_task(without["tasks"][kind]).get_dataset(
            LONG, split=split, shuffle=False)
        table = rec_ids if kind == "gensar_rec" else search_ids
        for ex in data.take(20).as_numpy_iterator():
          np.testing.assert_array_equal(ex["targets"], [*table[ex["target_item"]], 1])
  assert seen_on > 0                            # the default still writes them


def test_rate_zero_leaves_the_task_out_of_the_mixture(sim):
  """GenSAR's task ablations (configs/paper/gensar.py: 'w/o NSQP' = tasks.rates.next_query=0)."""
  config, workdir = sim
  c = tiny_config()
  c.tasks.mixture = "gensar"
  full = register(c, workdir, dual_ids(200))
  names = lambda reg: {t.name for t in seqio.get_mixture_or_task(reg["mixture"]).tasks}  # noqa
  assert full["tasks"]["next_query"] in names(full)
  c.tasks.rates.next_query = 0.0
  reg = register(c, workdir, dual_ids(200))
  assert names(reg) == {reg["tasks"][k] for k in ("gensar_rec", "gensar_search", "text2id",
                                                   "text2id_rec", "id2text", "id2text_rec")}
  for kind in ("gensar_rec", "gensar_search", "text2id", "id2text"):
    c.tasks.rates[kind] = 0.0
  with pytest.raises(ConfigError, match="config.tasks.mixture: gensar: .*every task's rate is 0"):
    register(c, workdir, dual_ids(200))


def _train_stream(task, seed, shard_info=None):
  return task.get_dataset(LONG, split="train", shuffle=True, seed=seed, num_epochs=None,
                          shard_info=shard_info, try_in_mem_cache=False).as_numpy_iterator()


def test_every_epoch_is_the_whole_training_set_in_a_fresh_seeded_order(sim):
  """Records are written in (user, time) order; a run's first batches must still
  draw from the whole user range, each epoch must be exactly the training set, and
  shards must partition it (EpochShuffledTask over a FilteredSource)."""
  config, workdir = sim
  reg = register(config, workdir, atomic_ids(200))
  task = seqio.get_mixture_or_task(reg["tasks"]["rec"])
  ds = prepared.load(f"{workdir}/prepared")
  train_rec = np.flatnonzero((ds.split == TRAIN) & (ds.events.behaviour == REC))
  n, num_users = len(train_rec), int(ds.events.user.max()) + 1
  it = _train_stream(task, seed=3)
  epochs = [[next(it) for _ in range(n)] for _ in range(2)]
  events = [[int(ex["event"]) for ex in e] for e in epochs]
  assert sorted(events[0]) == sorted(events[1]) == train_rec.tolist()
  assert events[0] != events[1]                       # a new order each epoch
  first_users = [int(ex["user"]) for ex in epochs[0][:32]]
  assert min(first_users) < num_users // 4 and max(first_users) >= 3 * num_users // 4
  assert len(set(first_users)) >= 16                  # not a slice of consecutive users
  again = _train_stream(task, seed=3)
  assert [int(next(again)["event"]) for _ in range(n)] == events[0]   # seeded: resumable
  other = _train_stream(task, seed=4)
  assert [int(next(other)["event"]) for _ in range(n)] != events[0]
  parts = []
  for k in range(3):
    shard = seqio.ShardInfo(index=k, num_shards=3)
    size = len(list(task.get_dataset(LONG, split="train", shuffle=False, num_epochs=1,
                                     shard_info=shard).as_numpy_iterator()))
    stream = _train_stream(task, seed=3 + k, shard_info=shard)
    parts.append([int(next(stream)["event"]) for _ in range(size)])
  assert sorted(sum(parts, [])) == train_rec.tolist()


@pytest.mark.parametrize("style", ["full", "short", "none"])
def test_prompt_style_sets_every_template_and_a_prompt_key_overrides_it(style):
  c = tiny_config()
  c.tasks.prompt_style = style
  c.tasks.prompts.search = "find {query}"
  templates = tasks_config.prompt_templates(c.tasks)
  assert templates["search"] == "find {query}"
  assert {k: v for k, v in templates.items() if k != "search"} == {
      k: kind.prompts[style] for k, kind in kinds.KINDS.items() if k != "search"}
  for kind, template in templates.items():      # every style is a valid template set
    assert kinds.KINDS[kind].required_fields <= set(formatting.template_fields(template))


def test_default_history_is_the_prefix_and_bare_ids(sim):
  """cpu default: short prompt, no separator (IDs delimit themselves)."""
  config, workdir = sim
  c = tiny_config()
  c.tasks.history_separator = get_base_config().tasks.history_separator
  assert c.tasks.history_separator == "" and c.tasks.prompt_style == "short"
  reg = register(c, workdir, atomic_ids(200))
  vocab = reg["vocabulary"]
  ds = seqio.get_mixture_or_task(reg["tasks"]["rec"]).get_dataset(LONG, split="test",
                                                                  shuffle=False)
  lengths = []
  for ex in ds.take(20).as_numpy_iterator():
    text = vocab.decode(ex["inputs"])
    assert re.fullmatch(r"recommend: (?:<[a-z0-9]+_\d+>)+", text), text
    lengths.append((len(ex["inputs"]), int(ex["history_length"])))
  prefix = len(vocab.encode("recommend: "))
  assert all(n == prefix + h + 1 for n, h in lengths)    # one token per atomic ID, EOS


def test_a_dataset_without_search_events_registers_and_search_models_fail_clearly(tmp_path):
  """rec-only data: the rec tasks register (no query table to build), a search model
  is a one-line ConfigError naming what to do."""
  from tests import known_answer  # pylint: disable=g-import-not-at-top
  data = tmp_path / "data"
  known_answer.write(str(data), num_items=200, num_users=30, search_per_user=0)
  c = tiny_config()
  c.data.source, c.data.path = "generic", str(data)
  workdir = str(tmp_path / "w")
  prepare.prepare(c, workdir, sp_model=vocab.sentencepiece_model(c))
  c.tasks.mixture = "rec_only"
  reg = register(c, workdir, atomic_ids(200))
  assert reg["example_counts"]["rec"] > 0 and reg["example_counts"]["search"] == 0
  ex = next(seqio.get_mixture_or_task(reg["mixture"]).get_dataset(
      LONG, split="train", shuffle=True, seed=0, num_epochs=None).as_numpy_iterator())
  assert len(ex["targets"]) == 2
  c.tasks.mixture = "search_only"
  with pytest.raises(ConfigError, match=r"config.tasks.mixture: search_only: the prepared "
                     r"dataset has no training examples for any of its tasks \(search\).*"
                     r"configs/rec.py"):
    register(c, workdir, atomic_ids(200))


def test_a_new_task_kind_is_one_registry_entry_plus_its_name_in_a_mixture(sim, monkeypatch):
  """docs/tasks.md, 'How to add a task kind': a KINDS entry (here rec_reversed: the rec
  history, the target's rec ID tokens in reverse order) and its name in a mixture; the
  config keys, template checks, task and mixture follow from them."""
  _, workdir = sim
  toy = kinds.TaskKind(
      "rec_reversed", source="events", behaviour=REC, history="rec",
      target=lambda f, ex: tf.reverse(f.rec_id_tokens(ex["item"]), [0]),
      required_fields=frozenset({"history"}), allowed_fields=frozenset({"history"}),
      prompts={"full": "Reverse the next item after {history}.", "short": "reverse: {history}",
               "none": "{history}"})
  monkeypatch.setitem(kinds.KINDS, "rec_reversed", toy)
  monkeypatch.setitem(registry.MIXTURE_KINDS, "joint", ("rec", "search", "rec_reversed"))
  c = tiny_config()                     # made after the entry: tasks.prompts.rec_reversed, ...
  assert c.tasks.prompts.rec_reversed == "" and c.tasks.rates.rec_reversed == -1.0
  c.tasks.mixture = "joint"
  ids = dual_ids(200)                   # two-token rec IDs: the reversal shows
  reg = register(c, workdir, ids)
  vocab = reg["vocabulary"]
  ds = prepared.load(f"{workdir}/prepared")
  ev, h = ds.events, c.data.max_history
  rec_strings, rec_tokens = formatting.id_strings(ids.rec), vocab.item_ids(ids.rec)
  train_rec = np.flatnonzero((ds.split == TRAIN) & (ev.behaviour == REC))
  task = seqio.get_mixture_or_task(reg["tasks"]["rec_reversed"])
  events = []
  for ex in task.get_dataset(LONG, split="train", shuffle=False).as_numpy_iterator():
    e = int(ex["event"])
    events.append(e)
    hist = [int(ev.item[j]) for j in reference_history(ev, e, 10 ** 9)
            if ev.behaviour[j] == REC][-h:]
    text = "reverse: " + "; ".join(rec_strings[i] for i in hist)
    np.testing.assert_array_equal(ex["inputs"], [*vocab.encode(text), 1])
    np.testing.assert_array_equal(ex["targets"], [*rec_tokens[ev.item[e]][::-1], 1])
    assert ex["target_item"] == ev.item[e] and ex["history_length"] == len(hist)
  assert len(train_rec) > 0 and sorted(events) == train_rec.tolist() == sorted(set(events))
  assert reg["example_counts"]["rec_reversed"] == len(train_rec)
  mix = seqio.get_mixture_or_task(reg["mixture"])
  assert mix.get_rate(task) == len(train_rec) == reg["rates"]["rec_reversed"]
  assert {t.name for t in mix.tasks} == {reg["tasks"][k] for k in ("rec", "search",
                                                                   "rec_reversed")}
  c.tasks.prompts.rec_reversed = "reverse"             # the entry's fields are checked
  with pytest.raises(ConfigError,
                     match=r"config.tasks.prompts.rec_reversed: needs \['history'\]"):
    register(c, workdir, ids)
  monkeypatch.setitem(registry.MIXTURE_KINDS, "joint", ("rec", "search", "rec_reverse"))
  with pytest.raises(ValueError, match=r"'joint' names \['rec_reverse'\], not kinds"):
    register(tiny_config(), workdir, ids)
