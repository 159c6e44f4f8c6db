"""`--mode=prepare`: raw data -> `{workdir}/prepared/` (see genret_jax.data.prepared).

Steps: read and validate the raw data (`genret_jax.data.readers.load_raw`),
chronological leave-one-out split, histories, sampled candidates (GenSAR
protocol), SentencePiece model, sharded TFRecords, manifest. Everything is
written into a temporary directory beside `prepared/` and renamed into place
at the end, so a crash never leaves a directory that reads as complete (and the
next run removes such leftover `.prepared.tmp-*` folders). An existing
`prepared/` whose manifest has the same config hash (config.data + config.vocab)
and whose files match the sizes and sha256 the manifest records is reused; a
damaged one is rebuilt, with a warning naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from typing import Callable

import ml_collections
import numpy as np

from genret_jax import cache
from genret_jax.data import negatives as negatives_lib
from genret_jax.data import prepared as prepared_lib
from genret_jax.data import readers
from genret_jax.data import stats as stats_lib
from genret_jax.data.schema import BEHAVIOURS, REC, Catalog, Events
from genret_jax.data.splits import SPLIT_NAMES, TRAIN, leave_one_out
from genret_jax.errors import ConfigError, DataError

PREPARED = "prepared"
# Item texts + queries SentencePiece trains on (a seeded sample above this; see _corpus).
SP_MAX_SENTENCES = 200_000


def config_hash(config: ml_collections.ConfigDict) -> str:
  """sha256 of config.data + config.vocab (what the prepared dataset depends on)."""
  blob = json.dumps({"format": prepared_lib.FORMAT_VERSION, "data": config.data.to_dict(),
                     "vocab": config.vocab.to_dict()}, sort_keys=True, default=list)
  return hashlib.sha256(blob.encode()).hexdigest()


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks config.data (readers.validate) and config.vocab; ConfigError naming the key."""
  readers.validate(config.data)
  if config.vocab.sp_model:
    if not os.path.isfile(config.vocab.sp_model):
      raise ConfigError("vocab.sp_model", f"no such file: {config.vocab.sp_model}")
  elif int(config.vocab.sp_vocab_size) < 64:
    raise ConfigError("vocab.sp_vocab_size", f"must be >= 64, got {config.vocab.sp_vocab_size}")


def histories(events: Events, max_history: int, chunk: int = 1 << 18
              ) -> dict[str, np.ndarray]:
  """The context of every event: the last `max_history` of the user's events with a
  strictly earlier timestamp (events at the same time, e.g. the rec and search
  events of one Amazon interaction, never see each other).

  Built `chunk` events at a time, so the only [E, H] arrays are the two outputs.

  Returns:
    hist: int64[E, H] event indices, oldest first, -1 left padding (any behaviour).
    rec_hist: int64[E, H] likewise over the user's rec events only.
  """
  n, h = events.num_events, max_history
  order = np.lexsort((np.arange(n), events.timestamp, events.user))   # timeline order
  user_sorted = events.user[order]
  time_sorted = events.timestamp[order]
  pos = np.arange(n)
  first = np.ones(n, bool)
  first[1:] = user_sorted[1:] != user_sorted[:-1]
  start = np.maximum.accumulate(np.where(first, pos, 0))               # user's first position
  first_at_time = first.copy()
  first_at_time[1:] |= time_sorted[1:] != time_sorted[:-1]
  end = np.maximum.accumulate(np.where(first_at_time, pos, 0))         # history is [start, end)
  is_rec = events.behaviour[order] == REC
  rec_order = np.concatenate([order[is_rec], [-1]])                    # rec events, timeline
  before = np.concatenate([[0], np.cumsum(is_rec)])[:-1]               # rec events before pos
  hist = np.empty((n, h), np.int64)
  rec_hist = np.empty((n, h), np.int64)
  cols = np.arange(h)[None, :]
  for lo in range(0, n, chunk):   # [chunk, H] temporaries, not [E, H] ones
    sl = slice(lo, min(lo + chunk, n))
    window = end[sl, None] - h + cols                                  # positions
    hist[order[sl]] = np.where(window >= start[sl, None], order[np.maximum(window, 0)], -1)
    rec_window = before[end[sl]][:, None] - h + cols
    rec_hist[order[sl]] = np.where(rec_window >= before[start[sl]][:, None],
                                   rec_order[np.maximum(rec_window, 0)], -1)
  return {"hist": hist, "rec_hist": rec_hist}


def item_ranks(events: Events, split: np.ndarray, seed: int) -> np.ndarray:
  """int64[E]: rank of each TRAIN event among TRAIN events of its (behaviour, item), in a
  seeded random order (caps keep ranks < cap); -1 for VALID/TEST events."""
  train = np.flatnonzero(split == TRAIN)
  tiebreak = np.random.default_rng(seed).permutation(len(train))
  group = events.behaviour[train].astype(np.int64) * (events.item.max(initial=0) + 1) \
      + events.item[train]
  order = np.lexsort((tiebreak, group))
  g = group[order]
  first = np.ones(len(g), bool)
  first[1:] = g[1:] != g[:-1]
  start = np.maximum.accumulate(np.where(first, np.arange(len(g)), 0))
  rank = np.full(events.num_events, -1, np.int64)
  rank[train[order]] = np.arange(len(g)) - start
  return rank


def _corpus(catalog_texts: list[str], events: Events, seed: int = 0,
            max_sentences: int = SP_MAX_SENTENCES) -> list[str]:
  """The SentencePiece training corpus: item texts and distinct queries (the
  `sp_model` function of write_prepared adds the prompt texts it needs).

  Above `max_sentences` item texts + queries, a seeded uniform sample of that
  many (in corpus order) is used, as SentencePiece's own `input_sentence_size`
  does (training time grows linearly with the corpus, ~0.8 ms per sentence on
  the shared 2-core machine: 17 min for a 1M-item catalog), plus sentences
  listing every character of the full corpus (space-separated) so that no
  character becomes unknown. Smaller corpora are used whole (unchanged).
  """
  queries = np.unique(events.query[events.behaviour != REC].astype(str)).tolist()
  texts = catalog_texts + queries
  if len(texts) > max_sentences:
    keep = np.sort(np.random.default_rng(seed).choice(len(texts), max_sentences, replace=False))
    chars = sorted(set().union(*map(set, texts)) - {" "})
    texts = [texts[i] for i in keep.tolist()] + [
        " ".join(chars[i:i + 500]) for i in range(0, len(chars), 500)]
  return texts


def _columns(events: Events, split: np.ndarray, hist: dict, ranks: np.ndarray,
             eval_events: np.ndarray, negatives: np.ndarray, index: np.ndarray,
             queries: np.ndarray) -> dict:
  """EVENT_FEATURES columns of the events `index`, in that order (see write_events).

  `queries` is `events.query.astype(str)`, converted once by the caller (not per shard).
  """
  h, rh = hist["hist"][index], hist["rec_hist"][index]

  def ragged(mat: np.ndarray, values: np.ndarray | None):   # None: the event indices
    valid = mat >= 0
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))])
    return (mat[valid] if values is None else values[mat[valid]]).tolist(), offsets

  pos = np.searchsorted(eval_events, index)
  is_eval = split[index] != TRAIN
  cand = np.concatenate([events.item[index, None], negatives[np.minimum(pos, len(negatives) - 1)]]
                        if len(negatives) else [events.item[index, None]], axis=1)
  cand_mask = np.broadcast_to(is_eval[:, None], cand.shape)
  return {
      "event": index.tolist(), "user": events.user[index].tolist(),
      "item": events.item[index].tolist(), "timestamp": events.timestamp[index].tolist(),
      "behaviour": events.behaviour[index].tolist(), "query": queries[index].tolist(),
      "split": split[index].tolist(), "item_rank": ranks[index].tolist(),
      "hist_event": ragged(h, None), "hist_item": ragged(h, events.item),
      "hist_behaviour": ragged(h, events.behaviour), "hist_query": ragged(h, queries),
      "rec_hist_event": ragged(rh, None), "rec_hist_item": ragged(rh, events.item),
      "candidates": (cand[cand_mask].tolist(),
                     np.concatenate([[0], np.cumsum(cand_mask.sum(axis=1))])),
  }


PHASES = ("split", "negatives", "histories", "item_ranks", "items_users", "event_shards",
          "counts_queries", "sentencepiece", "manifest")


def write_prepared(catalog: Catalog, events: Events, config: ml_collections.ConfigDict,
                   out: str, *, sp_model: Callable[[list[str]], bytes],
                   examples_per_shard: int = 20_000, verbose: bool = True,
                   on_phase: Callable[[str], None] | None = None) -> str:
  """Builds the prepared dataset from canonical tables into `out` (atomically).

  `sp_model(corpus)` returns the serialized SentencePiece model stored with the data
  (genret_jax.tasks.vocab.sentencepiece_model(config): the data layer does not know
  the task prompts), given the item texts and queries of `_corpus`.

  `on_phase(name)` is called as each of PHASES ends (e.g. to time them).
  """
  t0 = time.time()
  phase = on_phase or (lambda name: None)
  seed = int(config.data.seed)
  split = leave_one_out(events)
  texts = catalog.texts()
  phase("split")
  eval_events, negatives = negatives_lib.sample_candidates(
      events, split, texts, seed, source=str(config.data.path or config.data.source))
  phase("negatives")
  hist = histories(events, int(config.data.max_history))
  phase("histories")
  ranks = item_ranks(events, split, seed)
  phase("item_ranks")
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f".{os.path.basename(out)}.tmp-{uuid.uuid4().hex[:8]}")
  os.makedirs(tmp)
  try:
    names = prepared_lib.write_items(tmp, catalog, texts)
    names += prepared_lib.write_users(tmp, events.user_ids)
    phase("items_users")
    timeline = np.lexsort((np.arange(events.num_events), events.timestamp, events.user))
    queries = events.query.astype(str)
    for s, split_name in enumerate(SPLIT_NAMES):
      index = timeline[split[timeline] == s]
      cuts = prepared_lib.shard_bounds(events.user[index], examples_per_shard)
      for shard in range(len(cuts) - 1):   # one shard's columns in memory at a time
        name = prepared_lib.shard_name(split_name, shard, len(cuts) - 1)
        columns = _columns(events, split, hist, ranks, eval_events, negatives,
                           index[cuts[shard]:cuts[shard + 1]], queries)
        prepared_lib.write_event_shard(os.path.join(tmp, name), columns)
        names.append(name)
    phase("event_shards")
    counts = np.zeros((len(BEHAVIOURS), catalog.num_items), np.int64)
    train = split == TRAIN
    np.add.at(counts, (events.behaviour[train].astype(np.int64), events.item[train]), 1)
    np.save(os.path.join(tmp, prepared_lib.ITEM_COUNTS), counts)
    names.append(prepared_lib.ITEM_COUNTS)
    queries = np.unique(events.query[events.behaviour != REC].astype(str)).tolist()
    with open(os.path.join(tmp, prepared_lib.QUERIES), "w", encoding="utf-8") as f:
      json.dump(queries, f, ensure_ascii=False)
    names.append(prepared_lib.QUERIES)
    phase("counts_queries")
    with open(os.path.join(tmp, prepared_lib.SP_MODEL), "wb") as f:
      f.write(sp_model(_corpus(texts, events, seed)))
    names.append(prepared_lib.SP_MODEL)
    phase("sentencepiece")
    files = {n: prepared_lib.file_sha256(os.path.join(tmp, n)) for n in names}
    sizes = {n: os.path.getsize(os.path.join(tmp, n)) for n in names}
    stats = stats_lib.statistics(events, split, catalog.num_items)
    manifest = {
        "format": prepared_lib.FORMAT_VERSION, "config_hash": config_hash(config),
        "config": {"data": config.data.to_dict(), "vocab": config.vocab.to_dict()},
        "counts": stats, "item_fields": list(catalog.fields),
        "max_history": int(config.data.max_history),
        "num_negatives": int(negatives.shape[1]), "synthetic_time": bool(events.synthetic_time),
        "files": files, "sizes": sizes, "content_hash": prepared_lib.content_hash(files),
    }
    with open(os.path.join(tmp, prepared_lib.MANIFEST), "w") as f:
      json.dump(manifest, f, indent=1, default=list)
    old = None
    if os.path.lexists(out):
      old = os.path.join(parent, f".{os.path.basename(out)}.old-{uuid.uuid4().hex[:8]}")
      os.rename(out, old)
    os.rename(tmp, out)
    if old:
      shutil.rmtree(old, ignore_errors=True)
    phase("manifest")
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if verbose:
    print(stats_lib.format_table(str(config.data.source), stats))
    print(f"prepared dataset written to {out} in {time.time() - t0:.1f} s")
  return out


def reusable(config: ml_collections.ConfigDict, out: str) -> dict | None:
  """The manifest of `out` when it can be reused for `config`: same config hash and
  every file as the manifest records it (size and sha256). A damaged one (cut-off
  manifest, truncated or missing file) is None, with a warning naming the problem."""
  try:
    manifest = prepared_lib.read_manifest(out)
    if manifest is None or manifest["config_hash"] != config_hash(config):
      return None
    return prepared_lib.verify(out, hint="")
  except DataError as e:
    cache.warn(f"{e}; rebuilding the prepared dataset")
    return None


def prepare(config: ml_collections.ConfigDict, workdir: str, *,
            sp_model: Callable[[list[str]], bytes]) -> str:
  """raw data -> `{workdir}/prepared`; returns its path (reused when the config hash
  matches and the files are intact). Removes temporary folders of killed runs first."""
  validate(config)
  out = os.path.join(workdir, PREPARED)
  cache.folder_slot(out, "the prepared dataset")
  if os.path.isdir(workdir):
    cache.remove_stale(workdir, (f".{PREPARED}.tmp-*", f".{PREPARED}.old-*"))
  manifest = reusable(config, out)
  if manifest is not None:
    print(stats_lib.format_table(str(config.data.source), manifest["counts"]))
    print(f"reusing prepared dataset {out} (same config hash {manifest['config_hash'][:12]}, "
          "files verified)")
    return out
  t0 = time.time()
  catalog, events = readers.load_raw(config.data)
  print(f"read {config.data.source} in {time.time() - t0:.1f} s")
  return write_prepared(catalog, events, config, out, sp_model=sp_model)
