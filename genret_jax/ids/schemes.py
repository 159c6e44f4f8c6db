"""Identifier schemes by name: `config.ids.scheme` -> how its identifiers are built.

    SCHEMES[name] = Scheme(build, embeddings)

`build(inputs)` returns (ItemIdentifiers, report entry) from a `SchemeInputs`
(the config, the catalog and the cached item embeddings); `embeddings(ids_block)`
names the embedding kinds the scheme reads ('semantic', 'collaborative'), so
that their sources are checked before any work. Adding a scheme is a module with
a `build` function plus one line in SCHEMES (docs/ids.md, "How to add a scheme").

Level prefixes (vocabulary tokens are `<{prefix}_{code}>`):
  atomic     item
  rq_kmeans  rqk0 .. rqk{L-1} [+ rqk_dup]
  rq_vae     rqv0 .. rqv{L-1} [+ rqv_dup]
  gensar     sh0 sh1 (shared by both tables), sem0 sem1 (search), col0 col1 (rec)
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections
import numpy as np

from genret_jax.data.schema import Catalog
from genret_jax.ids import gensar, rq_kmeans, rq_vae, stats
from genret_jax.ids.types import IdTable, ItemIdentifiers, atomic_ids

EMBEDDING_KINDS = ("semantic", "collaborative", "concat")   # `embedding` keys of rq_*


@dataclasses.dataclass(frozen=True)
class SchemeInputs:
  """What a scheme builds from.

  Attributes:
    config: the job config (the scheme reads `config.ids.<scheme>` and `config.ids.seed`).
    catalog: the items; identifiers are rows in catalog order.
    embedding: kind ('semantic' | 'collaborative' | 'concat': both, rows L2-normalised
      and concatenated) -> float[num_items, d], built once and cached under
      {workdir}/ids/embeddings/.
  """
  config: ml_collections.ConfigDict
  catalog: Catalog
  embedding: Callable[[str], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Scheme:
  build: Callable[[SchemeInputs], tuple[ItemIdentifiers, dict]]
  embeddings: Callable[[ml_collections.ConfigDict], tuple[str, ...]] = lambda ids_block: ()


def table_report(codes: np.ndarray, sizes: tuple[int, ...], final: np.ndarray) -> dict:
  """Collision / usage / entropy of a code table before (codes) and after (final) dedup."""
  return {"collision_rate": stats.collision_rate(codes),
          "collision_rate_after_dedup": stats.collision_rate(final),
          "codebook_usage": stats.codebook_usage(codes, sizes),
          "entropy": stats.code_entropy(codes, sizes)}


def residual_identifiers(name: str, prefix: str, codes: np.ndarray, k: int, dedup: bool
                         ) -> tuple[ItemIdentifiers, dict]:
  """One table for both tasks from int[N, L] residual codes of `k` entries per level
  (+ TIGER's dedup level when `dedup`)."""
  sizes = (k,) * codes.shape[1]
  prefixes = tuple(f"{prefix}{l}" for l in range(codes.shape[1]))
  final, final_sizes = (rq_kmeans.with_dedup(codes, sizes) if dedup else (codes, sizes))
  if dedup:
    prefixes += (f"{prefix}_dup",)
  table = IdTable(name, final.astype(np.int32), prefixes, final_sizes)
  return ItemIdentifiers(name, table, table), table_report(codes, sizes, final)


def _embedding_of(block: str) -> Callable[[ml_collections.ConfigDict], tuple[str, ...]]:
  def kinds(ids_block: ml_collections.ConfigDict) -> tuple[str, ...]:
    kind = ids_block[block].embedding
    return ("semantic", "collaborative") if kind == "concat" else (kind,)
  return kinds


def build_atomic(inputs: SchemeInputs) -> tuple[ItemIdentifiers, dict]:
  ids = atomic_ids(inputs.catalog.num_items)
  codes = ids.search.codes
  return ids, table_report(codes, ids.search.level_sizes, codes)


def build_rq_kmeans(inputs: SchemeInputs) -> tuple[ItemIdentifiers, dict]:
  b = inputs.config.ids.rq_kmeans
  res = rq_kmeans.rq_kmeans(inputs.embedding(b.embedding), int(b.levels), int(b.codebook_size),
                            seed=int(inputs.config.ids.seed), iterations=int(b.iterations),
                            balanced=bool(b.balanced), chunk=int(b.chunk))
  ids, rep = residual_identifiers("rq_kmeans", "rqk", res.codes, int(b.codebook_size),
                                  bool(b.dedup))
  rep["recon_error"] = res.recon_error.tolist()
  return ids, rep


def build_rq_vae(inputs: SchemeInputs) -> tuple[ItemIdentifiers, dict]:
  b = inputs.config.ids.rq_vae
  res = rq_vae.train_rq_vae(inputs.embedding(b.embedding), levels=int(b.levels),
                            codebook_size=int(b.codebook_size), latent_dim=int(b.latent_dim),
                            hidden=tuple(b.hidden), beta=float(b.beta), epochs=int(b.epochs),
                            batch_size=int(b.batch_size), learning_rate=float(b.learning_rate),
                            weight_decay=float(b.weight_decay),
                            reseed_every=int(b.reseed_every), seed=int(inputs.config.ids.seed))
  ids, rep = residual_identifiers("rq_vae", "rqv", res.codes, int(b.codebook_size),
                                  bool(b.dedup))
  rep.update(recon_error=res.recon_by_level.tolist(), dead_codes_reseeded=res.reseeded,
             final_loss=float(res.losses[-1]))
  return ids, rep


def build_gensar(inputs: SchemeInputs) -> tuple[ItemIdentifiers, dict]:
  g = inputs.config.ids.gensar
  res = gensar.train_gensar(
      inputs.embedding("semantic"), inputs.embedding("collaborative"),
      shared_levels=int(g.shared_levels), specific_levels=int(g.specific_levels),
      codebook_size=int(g.codebook_size), latent_dim=int(g.latent_dim), hidden=tuple(g.hidden),
      beta=float(g.beta), epochs=int(g.epochs), batch_size=int(g.batch_size),
      learning_rate=float(g.learning_rate), weight_decay=float(g.weight_decay),
      clip_norm=float(g.clip_norm), eval_every=int(g.eval_every),
      sinkhorn_eps=float(g.sinkhorn_eps), sinkhorn_iters=int(g.sinkhorn_iters),
      collision_rounds=int(g.collision_rounds), seed=int(inputs.config.ids.seed))
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


SCHEMES: dict[str, Scheme] = {
    "atomic": Scheme(build_atomic),
    "rq_kmeans": Scheme(build_rq_kmeans, _embedding_of("rq_kmeans")),
    "rq_vae": Scheme(build_rq_vae, _embedding_of("rq_vae")),
    "gensar": Scheme(build_gensar, lambda ids_block: ("semantic", "collaborative")),
}
