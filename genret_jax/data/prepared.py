"""On-disk prepared datasets: sharded TFRecords of tf.train.Example + manifest.json.

Layout of a prepared directory:

  manifest.json                      counts, config, files and their sha256 and size,
                                     content hash (`verify` checks the files against it)
  spm.model                          SentencePiece model of the text vocabulary
  items.tfrecord-00000-of-00001      one Example per catalog item (ITEM_FEATURES)
  users.tfrecord-00000-of-00001      one Example per user (user, user_id)
  {split}.tfrecord-SSSSS-of-NNNNN    one Example per event whose split is `split`
                                     (train / validation / test; EVENT_FEATURES), in
                                     (user, time) order, shards cut at user boundaries
  train_item_counts.npy              int64[2, num_items]: TRAIN events per (behaviour, item)
  queries.json                       the distinct queries of the search events, sorted

Every event record carries what a task needs without joins: the target, its
history (the last `max_history` of the user's events with a strictly earlier
timestamp, any behaviour; and the last `max_history` such rec events), the
per-item rank used by example caps, and for VALID/TEST events the 100 candidates of the
sampled protocol (target first, then the 99 negatives). seqio reads the
`{split}` files with `seqio.TFExampleDataSource(split_patterns(path),
EVENT_FEATURES)` and shards them across hosts by file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from genret_jax import cache
from genret_jax.data.schema import Catalog, Events
from genret_jax.data.splits import SPLIT_NAMES, TRAIN
from genret_jax.errors import DataError, os_error

MANIFEST = "manifest.json"
SP_MODEL = "spm.model"
ITEM_COUNTS = "train_item_counts.npy"
QUERIES = "queries.json"
FORMAT_VERSION = 2
# Keys every manifest has (a manifest without one is incomplete).
_MANIFEST_KEYS = ("format", "config_hash", "counts", "files", "content_hash", "item_fields",
                  "num_negatives", "synthetic_time")

_I64 = tf.io.FixedLenFeature([], tf.int64)
_STR = tf.io.FixedLenFeature([], tf.string)
EVENT_FEATURES = {
    "event": _I64,            # index into Events (user, time order)
    "user": _I64,
    "item": _I64,             # the target item
    "timestamp": _I64,
    "behaviour": _I64,        # REC 0 / SEARCH 1
    "query": _STR,            # '' for rec events
    "split": _I64,
    "item_rank": _I64,        # rank among TRAIN events of (behaviour, item), seeded order; -1 eval
    "hist_event": tf.io.RaggedFeature(tf.int64),      # last H events before, oldest first
    "hist_item": tf.io.RaggedFeature(tf.int64),
    "hist_behaviour": tf.io.RaggedFeature(tf.int64),
    "hist_query": tf.io.RaggedFeature(tf.string),
    "rec_hist_event": tf.io.RaggedFeature(tf.int64),  # last H rec events before
    "rec_hist_item": tf.io.RaggedFeature(tf.int64),
    "candidates": tf.io.RaggedFeature(tf.int64),      # [100] for VALID/TEST, [] for TRAIN
}
ITEM_FEATURES = {"item": _I64, "item_id": _STR, "text": _STR}


@dataclasses.dataclass(frozen=True)
class PreparedDataset:
  """A loaded prepared dataset.

  Attributes:
    path: the prepared directory.
    catalog: the Catalog (fields in manifest order).
    events: the Events (user, time order).
    split: int8[E] TRAIN / VALID / TEST.
    eval_events: int64[V], ascending indices of the VALID/TEST events.
    negatives: int32[V, 99], row v the negatives of event eval_events[v].
    manifest: the manifest dict.
  """
  path: str
  catalog: Catalog
  events: Events
  split: np.ndarray
  eval_events: np.ndarray
  negatives: np.ndarray
  manifest: dict

  def candidates(self) -> np.ndarray:
    """int32[V, 100]: target item first, then the negatives."""
    return np.concatenate([self.events.item[self.eval_events, None], self.negatives], 1)


def shard_name(prefix: str, shard: int, num_shards: int) -> str:
  return f"{prefix}.tfrecord-{shard:05d}-of-{num_shards:05d}"


def split_patterns(path: str) -> dict[str, str]:
  """split name -> file pattern of its event shards."""
  return {name: os.path.join(path, f"{name}.tfrecord-*") for name in SPLIT_NAMES}


def items_pattern(path: str) -> str:
  return os.path.join(path, "items.tfrecord-*")


def _example(features: dict[str, tuple[str, list]]) -> bytes:
  """Serialized tf.train.Example from name -> ('int' | 'bytes', values)."""
  ex = tf.train.Example()
  fmap = ex.features.feature
  for name, (kind, values) in features.items():
    if kind == "int":
      fmap[name].int64_list.value.extend(values)
    else:
      fmap[name].bytes_list.value.extend([v.encode("utf-8") for v in values])
  return ex.SerializeToString()


def shard_bounds(user_of_row: np.ndarray, examples_per_shard: int) -> list[int]:
  """Row offsets [0, ..., R] cutting rows (sorted by user) into about equal shards of at
  most ~examples_per_shard rows, each cut at a user boundary (empty shards possible)."""
  n = len(user_of_row)
  num_shards = max(1, -(-n // examples_per_shard))
  cuts = [0]
  for s in range(1, num_shards):
    c = s * n // num_shards
    while 0 < c < n and user_of_row[c] == user_of_row[c - 1]:
      c += 1
    cuts.append(max(c, cuts[-1]))
  cuts.append(n)
  return cuts


def write_event_shard(path: str, columns: dict) -> None:
  """Writes one shard of event Examples.

  Args:
    path: the shard file.
    columns: EVENT_FEATURES name -> python list of per-row scalars, or for ragged
      features (flat python list of values, int64[R + 1] row offsets).
  """
  kinds = {k: "bytes" if v.dtype == tf.string else "int" for k, v in EVENT_FEATURES.items()}
  ragged = {k: (columns[k][0], columns[k][1].tolist()) for k, v in EVENT_FEATURES.items()
            if isinstance(v, tf.io.RaggedFeature)}
  scalar = {k: columns[k] for k in EVENT_FEATURES if k not in ragged}
  rows = len(columns["event"])
  with tf.io.TFRecordWriter(path) as w:
    for r in range(rows):
      feats = {k: (kinds[k], [v[r]]) for k, v in scalar.items()}
      feats.update({k: (kinds[k], flat[off[r]:off[r + 1]]) for k, (flat, off) in ragged.items()})
      w.write(_example(feats))


def write_items(directory: str, catalog: Catalog, texts: list[str]) -> list[str]:
  name = shard_name("items", 0, 1)
  fields = list(catalog.fields)
  columns = {f: catalog.fields[f].astype(str).tolist() for f in fields}
  ids = catalog.item_ids.astype(str).tolist()
  with tf.io.TFRecordWriter(os.path.join(directory, name)) as w:
    for i in range(catalog.num_items):
      feats = {"item": ("int", [i]), "item_id": ("bytes", [ids[i]]),
               "text": ("bytes", [texts[i]])}
      for f in fields:
        feats[f"field/{f}"] = ("bytes", [columns[f][i]])
      w.write(_example(feats))
  return [name]


def write_users(directory: str, user_ids: np.ndarray) -> list[str]:
  name = shard_name("users", 0, 1)
  with tf.io.TFRecordWriter(os.path.join(directory, name)) as w:
    for u, uid in enumerate(user_ids.astype(str).tolist()):
      w.write(_example({"user": ("int", [u]), "user_id": ("bytes", [uid])}))
  return [name]


def file_sha256(path: str) -> str:
  return cache.sha256(path)


def content_hash(files: dict[str, str]) -> str:
  """sha256 over the sorted (name, file sha256) pairs."""
  return hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()


def read_manifest(path: str) -> dict | None:
  """The manifest of a prepared dataset, or None when there is none.

  Raises:
    DataError: `path` is not a folder, or manifest.json is unreadable (cut off,
      not JSON) or lacks the keys every manifest has.
  """
  file = os.path.join(path, MANIFEST)
  try:
    with open(file, encoding="utf-8") as f:
      text = f.read()
  except FileNotFoundError:
    return None
  except OSError as e:
    raise os_error(e, file, "cannot read the manifest") from None
  try:
    manifest = json.loads(text)
  except (ValueError, RecursionError) as e:
    raise DataError(file, f"unreadable: cut off or not JSON ({str(e).split(':')[0]})") from None
  missing = [k for k in _MANIFEST_KEYS if not isinstance(manifest, dict) or k not in manifest]
  if missing:
    raise DataError(file, f"incomplete: no {missing[0]!r} entry")
  return manifest


HINT = "; rerun --mode=prepare (it rebuilds the prepared dataset)"


def verify(path: str, hint: str = HINT) -> dict:
  """The manifest of a complete prepared dataset whose files match it (size and sha256).

  `hint` ends the error message of a damaged file.

  Raises:
    DataError: no manifest, an unreadable one, or a file that is missing,
      truncated or changed since prepare wrote it (naming the file).
  """
  manifest = read_manifest(path)
  if manifest is None:
    raise DataError(os.path.join(path, MANIFEST),
                    "missing: not a (complete) prepared dataset; run --mode=prepare")
  sizes = manifest.get("sizes", {})
  record = {n: [sizes[n], h] if n in sizes else h for n, h in manifest["files"].items()}
  bad = cache.check_files(path, record, MANIFEST)
  if bad:
    raise DataError(os.path.join(path, bad[0]), bad[1] + hint)
  return manifest


def _parse_all(files: list[str], features: dict) -> dict:
  """Every record of `files` parsed in bulk: name -> numpy array, or for a ragged
  feature (flat values, int64[R] row lengths) (no per-row Python objects)."""
  ds = tf.data.TFRecordDataset(files).batch(16384).map(
      lambda x: tf.io.parse_example(x, features))
  parts: dict[str, list] = {k: [] for k in features}
  for batch in ds:
    for k, v in batch.items():
      parts[k].append((v.flat_values.numpy(), v.row_lengths().numpy())
                      if isinstance(v, tf.RaggedTensor) else v.numpy())
  out = {}
  for k, v in parts.items():
    empty = np.zeros([0], features[k].dtype.as_numpy_dtype)
    if isinstance(features[k], tf.io.RaggedFeature):
      out[k] = (np.concatenate([p[0] for p in v]) if v else empty,
                np.concatenate([p[1] for p in v]).astype(np.int64) if v
                else np.zeros([0], np.int64))
    else:
      out[k] = np.concatenate(v) if v else empty
  return out


def load(path: str) -> PreparedDataset:
  """Reads a prepared directory written by `genret_jax.data.prepare.prepare`."""
  manifest = verify(path)
  fields = manifest["item_fields"]
  item_feats = dict(ITEM_FEATURES, **{f"field/{f}": _STR for f in fields})
  items = _parse_all(sorted(tf.io.gfile.glob(items_pattern(path))), item_feats)
  order = np.argsort(items["item"])
  catalog = Catalog(
      item_ids=items["item_id"][order].astype(str).astype(object),
      fields={f: np.array([b.decode("utf-8") for b in items[f"field/{f}"][order]], dtype=object)
              for f in fields})
  users = _parse_all(sorted(tf.io.gfile.glob(os.path.join(path, "users.tfrecord-*"))),
                     {"user": _I64, "user_id": _STR})
  user_ids = users["user_id"][np.argsort(users["user"])].astype(str).astype(object)
  keep = ("event", "user", "item", "timestamp", "behaviour", "query", "split", "candidates")
  ev = {k: [] for k in keep}
  for split_name in SPLIT_NAMES:
    files = sorted(tf.io.gfile.glob(split_patterns(path)[split_name]))
    if not files:
      continue
    part = _parse_all(files, {k: EVENT_FEATURES[k] for k in keep})
    for k in keep:
      ev[k].append(part[k])
  order = np.argsort(np.concatenate(ev["event"]))
  col = {k: np.concatenate(ev[k])[order] for k in keep if k != "candidates"}
  events = Events(
      user=col["user"].astype(np.int32), item=col["item"].astype(np.int32),
      timestamp=col["timestamp"].astype(np.int64), behaviour=col["behaviour"].astype(np.int8),
      query=np.array([q.decode("utf-8") for q in col["query"]], dtype=object),
      user_ids=user_ids, synthetic_time=bool(manifest["synthetic_time"]))
  split = col["split"].astype(np.int8)
  # Candidates stay flat: row r of the files is values[start[r]:start[r] + length[r]].
  values = np.concatenate([v for v, _ in ev["candidates"]])
  length = np.concatenate([n for _, n in ev["candidates"]])
  start = (np.cumsum(length) - length)[order]          # per event, in event order
  eval_events = np.flatnonzero(split != TRAIN)
  num_neg = manifest["num_negatives"]
  bad = np.flatnonzero(length[order][eval_events] != num_neg + 1)
  if bad.size:
    raise DataError(path, f"event {int(eval_events[bad[0]])} has "
                    f"{int(length[order][eval_events[bad[0]]])} candidates, expected "
                    f"{num_neg + 1} (target + {num_neg} negatives)", field="candidates")
  negatives = values[start[eval_events][:, None] + 1 + np.arange(num_neg)].astype(np.int32)
  return PreparedDataset(path, catalog, events, split, eval_events, negatives, manifest)


def read_queries(path: str) -> list[str]:
  """The sorted distinct queries of a prepared dataset's search events."""
  with open(os.path.join(path, QUERIES), encoding="utf-8") as f:
    return json.load(f)


def item_train_counts(path: str) -> np.ndarray:
  """int64[2, num_items]: TRAIN events per (behaviour, item) of a prepared dataset."""
  return np.load(os.path.join(path, ITEM_COUNTS))
