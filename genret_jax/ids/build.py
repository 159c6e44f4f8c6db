"""Builds the item identifiers of `config.ids.scheme` and reports on them.

    build_identifiers(config, catalog, events, split, workdir)
        -> (ItemIdentifiers, report entry)
    run_ids_mode(config, workdir)      # --mode=ids: load_raw + split + build

IDs go to `{workdir}/ids/{scheme}/` (ItemIdentifiers.save, written to a temp
dir then renamed); `{workdir}/ids/report.json` maps scheme -> report entry and
is merged, never overwritten wholesale. Embeddings are cached under
`{workdir}/ids/embeddings/` keyed by their config and a data fingerprint.

Level prefixes (vocabulary tokens are `<{prefix}_{code}>`):
  atomic     item
  rq_kmeans  rqk0 .. rqk{L-1} [+ rqk_dup]
  rq_vae     rqv0 .. rqv{L-1} [+ rqv_dup]
  gensar     sh0 sh1 (shared by both tables), sem0 sem1 (search), col0 col1 (rec)
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
from genret_jax.ids import stats
from genret_jax.ids.config import SCHEMES
from genret_jax.ids.types import IdTable, ItemIdentifiers, atomic_ids

EMBEDDING_KINDS = ("semantic", "collaborative", "concat")


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
  if c.scheme == "atomic":
    return ()
  if c.scheme == "gensar":
    return ("semantic", "collaborative")
  kind = c[c.scheme].embedding
  return ("semantic", "collaborative") if kind == "concat" else (kind,)


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


def table_report(codes: np.ndarray, sizes: tuple[int, ...], final: np.ndarray) -> dict:
  """Collision / usage / entropy of a code table before (codes) and after (final) dedup."""
  return {"collision_rate": stats.collision_rate(codes),
          "collision_rate_after_dedup": stats.collision_rate(final),
          "codebook_usage": stats.codebook_usage(codes, sizes),
          "entropy": stats.code_entropy(codes, sizes)}


def _residual_scheme(name: str, prefix: str, codes: np.ndarray, k: int, dedup: bool):
  from genret_jax.ids import rq_kmeans as rqk  # pylint: disable=g-import-not-at-top
  sizes = (k,) * codes.shape[1]
  prefixes = tuple(f"{prefix}{l}" for l in range(codes.shape[1]))
  final, final_sizes = (rqk.with_dedup(codes, sizes) if dedup else (codes, sizes))
  if dedup:
    prefixes += (f"{prefix}_dup",)
  table = IdTable(name, final.astype(np.int32), prefixes, final_sizes)
  return ItemIdentifiers(name, table, table), table_report(codes, sizes, final)


def _build(config, catalog, events, split, workdir) -> tuple[ItemIdentifiers, dict]:
  c = config.ids
  seed = int(c.seed)
  info: dict = {}
  if c.scheme == "atomic":
    ids = atomic_ids(catalog.num_items)
    codes = ids.search.codes
    return ids, table_report(codes, ids.search.level_sizes, codes)
  if c.scheme == "rq_kmeans":
    from genret_jax.ids import rq_kmeans as rqk  # pylint: disable=g-import-not-at-top
    b = c.rq_kmeans
    x = _input(b.embedding, config, catalog, events, split, workdir, info)
    res = rqk.rq_kmeans(x, int(b.levels), int(b.codebook_size), seed=seed,
                        iterations=int(b.iterations), balanced=bool(b.balanced),
                        chunk=int(b.chunk))
    ids, rep = _residual_scheme("rq_kmeans", "rqk", res.codes, int(b.codebook_size),
                                bool(b.dedup))
    rep["recon_error"] = res.recon_error.tolist()
  elif c.scheme == "rq_vae":
    from genret_jax.ids import rq_vae  # pylint: disable=g-import-not-at-top
    b = c.rq_vae
    x = _input(b.embedding, config, catalog, events, split, workdir, info)
    res = rq_vae.train_rq_vae(x, levels=int(b.levels), codebook_size=int(b.codebook_size),
                              latent_dim=int(b.latent_dim), hidden=tuple(b.hidden),
                              beta=float(b.beta), epochs=int(b.epochs),
                              batch_size=int(b.batch_size), learning_rate=float(b.learning_rate),
                              weight_decay=float(b.weight_decay),
                              reseed_every=int(b.reseed_every), seed=seed)
    ids, rep = _residual_scheme("rq_vae", "rqv", res.codes, int(b.codebook_size), bool(b.dedup))
    rep.update(recon_error=res.recon_by_level.tolist(), dead_codes_reseeded=res.reseeded,
               final_loss=float(res.losses[-1]))
  else:
    ids, rep = _build_gensar(config, catalog, events, split, workdir, info)
  rep["embeddings"] = info
  return ids, rep


def _build_gensar(config, catalog, events, split, workdir, info):
  from genret_jax.ids import gensar  # pylint: disable=g-import-not-at-top
  g = config.ids.gensar
  xs = _embedding("semantic", config, catalog, events, split, workdir, info)
  xc = _embedding("collaborative", config, catalog, events, split, workdir, info)
  res = gensar.train_gensar(
      xs, xc, shared_levels=int(g.shared_levels), specific_levels=int(g.specific_levels),
      codebook_size=int(g.codebook_size), latent_dim=int(g.latent_dim), hidden=tuple(g.hidden),
      beta=float(g.beta), epochs=int(g.epochs), batch_size=int(g.batch_size),
      learning_rate=float(g.learning_rate), weight_decay=float(g.weight_decay),
      clip_norm=float(g.clip_norm), eval_every=int(g.eval_every),
      sinkhorn_eps=float(g.sinkhorn_eps), sinkhorn_iters=int(g.sinkhorn_iters),
      collision_rounds=int(g.collision_rounds), seed=int(config.ids.seed))
  k = int(g.codebook_size)
  shp = tuple(f"sh{l}" for l in range(res.shared.shape[1]))
  sem_p = shp + tuple(f"sem{l}" for l in range(res.semantic.shape[1]))
  col_p = shp + tuple(f"col{l}" for l in range(res.collaborative.shape[1]))
  sem = np.concatenate([res.shared, res.semantic], 1).astype(np.int32)
  col = np.concatenate([res.shared, res.collaborative], 1).astype(np.int32)
  ids = ItemIdentifiers("gensar", IdTable("semantic", sem, sem_p, (k,) * len(sem_p)),
                        IdTable("collaborative", col, col_p, (k,) * len(col_p)))
  tables = {
      "semantic": table_report(np.concatenate([res.shared, res.semantic_before], 1),
                               (k,) * len(sem_p), sem),
      "collaborative": table_report(np.concatenate([res.shared, res.collaborative_before], 1),
                                    (k,) * len(col_p), col)}
  tables["semantic"]["rounds"] = res.rounds["semantic"]
  tables["collaborative"]["rounds"] = res.rounds["collaborative"]
  all_codes = np.concatenate([res.shared, res.semantic_before, res.collaborative_before], 1)
  sizes = (k,) * all_codes.shape[1]
  rep = {"collision_rate": float(np.mean([t["collision_rate"] for t in tables.values()])),
         "collision_rate_after_dedup": float(np.mean(
             [t["collision_rate_after_dedup"] for t in tables.values()])),
         "codebook_usage": stats.codebook_usage(all_codes, sizes),
         "entropy": stats.code_entropy(all_codes, sizes),
         "levels": list(shp) + list(sem_p[len(shp):]) + list(col_p[len(shp):]),
         "tables": tables, "best_epoch": res.best_epoch, "final_loss": float(res.losses[-1]),
         "seconds": res.seconds}
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


def run_ids_mode(config: ml_collections.ConfigDict, workdir: str) -> tuple[ItemIdentifiers, dict]:
  """--mode=ids: raw data -> leave-one-out split -> build_identifiers."""
  from genret_jax.data.readers import load_raw  # pylint: disable=g-import-not-at-top
  from genret_jax.data.splits import leave_one_out  # pylint: disable=g-import-not-at-top
  validate(config)
  catalog, events = load_raw(config.data)
  return build_identifiers(config, catalog, events, leave_one_out(events), workdir)
