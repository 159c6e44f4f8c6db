"""Builds the item identifiers of `config.ids.scheme` and reports on them.

    build_identifiers(config, catalog, events, split, workdir)
        -> (ItemIdentifiers, report entry)

IDs go to `{workdir}/ids/{scheme}/` (ItemIdentifiers.save, written to a temp
dir then renamed); `{workdir}/ids/report.json` maps scheme -> report entry and
is merged, never overwritten wholesale. Embeddings are cached under
`{workdir}/ids/embeddings/` keyed by their config and a data fingerprint.

Schemes (their builders and level prefixes) are registered in genret_jax.ids.schemes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zipfile

import ml_collections
import numpy as np

from genret_jax.data.schema import Catalog, Events
from genret_jax import cache as cache_lib
from genret_jax.errors import ConfigError, DataError, brief
from genret_jax.ids import embeddings as emb
from genret_jax.ids.schemes import EMBEDDING_KINDS, SCHEMES, SchemeInputs
from genret_jax.ids.types import ItemIdentifiers


def _positive(value, key: str, minimum: int = 1) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ConfigError(key, f"must be an integer >= {minimum}, got {value!r}")


def validate(config: ml_collections.ConfigDict, num_items: int | None = None) -> None:
  """ConfigError (or DataError for a bad .npy, when num_items is given) before any work."""
  c = config.ids
  if c.scheme not in SCHEMES:
    raise ConfigError("ids.scheme", f"must be one of {', '.join(SCHEMES)}, got {c.scheme!r}")
  if c.semantic.source not in ("tfidf", "npy", "t5"):
    raise ConfigError("ids.semantic.source", f"must be tfidf, npy or t5, got {c.semantic.source!r}")
  if c.collaborative.source not in ("sasrec", "npy"):
    raise ConfigError("ids.collaborative.source",
                      f"must be sasrec or npy, got {c.collaborative.source!r}")
  _positive(c.semantic.dim, "ids.semantic.dim")
  for name in ("rq_kmeans", "rq_vae"):
    b = c[name]
    if b.embedding not in EMBEDDING_KINDS:
      raise ConfigError(f"ids.{name}.embedding",
                        f"must be one of {', '.join(EMBEDDING_KINDS)}, got {b.embedding!r}")
    _positive(b.levels, f"ids.{name}.levels")
    _positive(b.codebook_size, f"ids.{name}.codebook_size", 2)
  _positive(c.rq_kmeans.iterations, "ids.rq_kmeans.iterations")
  for name in ("rq_vae", "gensar"):
    for key in ("epochs", "batch_size", "latent_dim"):
      _positive(c[name][key], f"ids.{name}.{key}")
  g = c.gensar
  _positive(g.shared_levels, "ids.gensar.shared_levels")
  _positive(g.specific_levels, "ids.gensar.specific_levels")
  _positive(g.codebook_size, "ids.gensar.codebook_size", 2)
  _positive(g.collision_rounds, "ids.gensar.collision_rounds", 0)
  s = c.sasrec
  if s.loss not in ("bce", "softmax"):
    raise ConfigError("ids.sasrec.loss", f"must be bce or softmax, got {s.loss!r}")
  for key in ("dim", "num_layers", "num_heads", "max_len", "epochs", "batch_size"):
    _positive(s[key], f"ids.sasrec.{key}")
  _positive(s.patience, "ids.sasrec.patience", 0)
  needs = set(_kinds_needed(c))
  if "semantic" in needs and c.semantic.source == "t5" and not os.path.isdir(c.semantic.path):
    raise ConfigError("ids.semantic.path",
                      f"source=t5 needs a HF T5 checkpoint directory, got {c.semantic.path!r}")
  if num_items is None:
    return
  if "semantic" in needs and c.semantic.source == "npy":
    emb.load_npy(c.semantic.path, num_items)
  if "collaborative" in needs and c.collaborative.source == "npy":
    emb.load_npy(c.collaborative.path, num_items)


def _kinds_needed(c: ml_collections.ConfigDict) -> tuple[str, ...]:
  return SCHEMES[c.scheme].embeddings(c)


def _fingerprint(catalog: Catalog, events: Events, split: np.ndarray) -> str:
  h = hashlib.sha1()
  h.update("\x00".join(map(str, catalog.item_ids)).encode())
  for a in (events.user, events.item, events.timestamp, events.behaviour, split):
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def _embedding(kind: str, config, catalog, events, split, workdir: str,
               info: dict) -> np.ndarray:
  """Semantic or collaborative embeddings, from the cache when it matches."""
  c = config.ids
  block = c.semantic if kind == "semantic" else c.collaborative
  key = {"kind": kind, "block": block.to_dict(), "seed": int(c.seed),
         "sasrec": c.sasrec.to_dict() if kind == "collaborative" else None,
         "data": _fingerprint(catalog, events, split)}
  key = json.loads(json.dumps(key, default=list))
  cache = os.path.join(workdir, "ids", "embeddings")
  npy, meta = os.path.join(cache, f"{kind}.npy"), os.path.join(cache, f"{kind}.json")
  if c.cache_embeddings and os.path.isfile(npy) and os.path.isfile(meta):
    cached = _cached_embedding(npy, meta, key, catalog.num_items)
    if cached is not None:
      info[kind] = dict(cached[1], cached=True)
      return cached[0]
  t0 = time.time()
  if kind == "semantic":
    x = emb.semantic_embeddings(c.semantic, catalog, int(c.seed))
    extra = {"source": c.semantic.source}
  else:
    x, extra = emb.collaborative_embeddings(c, catalog, events, split)
  extra = dict(extra, dim=int(x.shape[1]), seconds=round(time.time() - t0, 2))
  info[kind] = extra
  if c.cache_embeddings:
    os.makedirs(cache, exist_ok=True)
    np.save(npy + ".tmp.npy", x)
    os.replace(npy + ".tmp.npy", npy)
    with open(meta + ".tmp", "w") as f:
      json.dump({"key": key, "info": extra}, f, indent=1, default=str)
    os.replace(meta + ".tmp", meta)
  return x


def _cached_embedding(npy: str, meta: str, key: dict, num_items: int
                      ) -> tuple[np.ndarray, dict] | None:
  """(embeddings, info) of the cache when its key matches and it reads whole; an
  unreadable cache (cut-off JSON or .npy, wrong row count) is None with a warning."""
  try:
    with open(meta) as f:
      saved = json.load(f)
    if not isinstance(saved, dict) or saved.get("key") != key:
      return None
    x = np.load(npy)
    if x.ndim != 2 or x.shape[0] != num_items:
      raise ValueError(f"shape {x.shape}, expected [{num_items}, d]")
    return x, dict(saved.get("info", {}))
  except (OSError, ValueError, EOFError, RecursionError) as e:
    cache_lib.warn(f"{npy}: unreadable embedding cache ({brief(e)}); recomputing it")
    return None


def _unit_rows(x: np.ndarray) -> np.ndarray:
  n = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.where(n > 0, n, 1.0)


def _input(kind: str, config, catalog, events, split, workdir, info) -> np.ndarray:
  if kind == "concat":
    return np.concatenate([_unit_rows(_embedding(k, config, catalog, events, split, workdir, info))
                           for k in ("semantic", "collaborative")], axis=1)
  return _embedding(kind, config, catalog, events, split, workdir, info)


def _build(config, catalog, events, split, workdir) -> tuple[ItemIdentifiers, dict]:
  info: dict = {}
  inputs = SchemeInputs(config, catalog, lambda kind: _input(
      kind, config, catalog, events, split, workdir, info))
  ids, rep = SCHEMES[config.ids.scheme].build(inputs)
  rep["embeddings"] = info
  return ids, rep


def _atomic_replace_dir(build: callable, target: str) -> None:
  """Runs build(tmp_dir) then moves tmp_dir to target; target is never half-written."""
  parent = os.path.dirname(target)
  os.makedirs(parent, exist_ok=True)
  tmp = f"{target}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  build(tmp)
  old = f"{target}.old-{os.getpid()}"
  if os.path.exists(target):
    os.rename(target, old)
  os.rename(tmp, target)
  shutil.rmtree(old, ignore_errors=True)


def merge_report(path: str, scheme: str, entry: dict) -> dict:
  """Reads, updates and atomically rewrites report.json; returns the whole report."""
  report = {}
  if os.path.isfile(path):
    try:
      with open(path) as f:
        report = json.load(f)
    except (OSError, ValueError) as e:
      cache_lib.warn(f"{path}: unreadable ({brief(e)}); starting a new report")
    report = report if isinstance(report, dict) else {}
  report[scheme] = entry
  with open(path + ".tmp", "w") as f:
    json.dump(report, f, indent=1, default=float)
  os.replace(path + ".tmp", path)
  return report


def format_report(report: dict) -> str:
  """Markdown table, one row per scheme."""
  rows = ["| scheme | collision rate | after dedup | codebook usage per level "
          "| entropy (bits) per level | build s |", "|---|---|---|---|---|---|"]
  fmt = lambda xs, d: " ".join(f"{v:.{d}f}" for v in xs)
  for scheme, e in report.items():
    rows.append(f"| {scheme} | {e['collision_rate']:.4f} | {e['collision_rate_after_dedup']:.4f} "
                f"| {fmt(e['codebook_usage'], 2)} | {fmt(e['entropy'], 2)} "
                f"| {e['build_seconds']:.1f} |")
  return "\n".join(rows)


def build_identifiers(config: ml_collections.ConfigDict, catalog: Catalog, events: Events,
                      split: np.ndarray, workdir: str) -> tuple[ItemIdentifiers, dict]:
  """Builds, saves and reports the identifiers of `config.ids.scheme`.

  Args:
    catalog, events: the canonical dataset; split: int8[E] from leave_one_out
      (collaborative embeddings only ever see TRAIN rec events).
    workdir: IDs go to {workdir}/ids/{scheme}/, the report to
      {workdir}/ids/report.json.
  Returns:
    (identifiers, this scheme's report entry).
  """
  validate(config, catalog.num_items)
  scheme = config.ids.scheme
  t0 = time.time()
  ids, entry = _build(config, catalog, events, split, workdir)
  entry["build_seconds"] = round(time.time() - t0, 2)
  entry["num_items"] = catalog.num_items
  entry["id_length"] = {"search": ids.search.length, "rec": ids.rec.length}
  _atomic_replace_dir(ids.save, os.path.join(workdir, "ids", scheme))
  report = merge_report(os.path.join(workdir, "ids", "report.json"), scheme, entry)
  print(format_report(report))
  return ids, entry


def load_identifiers(workdir: str, scheme: str) -> ItemIdentifiers:
  """The identifiers `build_identifiers` saved for `scheme`."""
  path = os.path.join(workdir, "ids", scheme)
  if not os.path.isfile(os.path.join(path, "ids.json")):
    raise ConfigError("ids.scheme", f"no identifiers built for {scheme!r} under {path}; "
                      "run --mode=ids first")
  try:
    return ItemIdentifiers.load(path)
  except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
    raise DataError(path, f"unreadable identifiers ({type(e).__name__}: "
                    f"{' '.join(str(e).split())[:120]}); rerun --mode=ids") from None
