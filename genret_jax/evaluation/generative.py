"""Retrieval through the decoder: the one decode path of the evaluation, the
validation during training and the pipeline's test evaluation.

  catalog_trie(table, level_offsets, ...)  the full-catalog trie, on device once
  generate_items(model, params, inputs, constraint_fn, ...)  the jitted search, batched
  decode_full(model, params, inputs, targets, trie, ...)     full protocol
  decode_sampled(model, params, inputs, targets, item_tokens, candidates, ...)
                                                             sampled protocol
  evaluate_generative(...)   both protocols from the `decode` / `eval` blocks

Every function takes `decode_fn` (T5X's injectable decode function, default
`decoding.beam_search`), handed to `decoding.model_decode.search`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, NamedTuple, Sequence

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from genret_jax.decoding import beam as bs
from genret_jax.decoding import candidates as cand_lib
from genret_jax.decoding import config as decoding_config
from genret_jax.decoding import model_decode
from genret_jax.decoding import trie as trie_lib
from genret_jax.evaluation import metrics as metrics_lib
from genret_jax.model import partitioning

_candidate_set = jax.jit(cand_lib.candidate_set)

# (lo, hi, pad) -> the constraint of queries lo:hi padded by `pad` rows.
ConstraintFn = Callable[[int, int, int], Any]
Rules = Sequence[tuple[str, str | None]]


class FullDecode(NamedTuple):
  """Full-catalog decoding of Q queries.

  Attributes:
    metrics: {metric: mean over queries} plus 'invalid_id_rate'.
    per_query: {metric: float[Q]}.
    items: int32[Q, R] ranked items, -1 padded.
  """
  metrics: dict[str, float]
  per_query: dict[str, np.ndarray]
  items: np.ndarray


def _to_host(a: jax.Array) -> np.ndarray:
  """The whole array on this host; across processes, gathered from every one."""
  if getattr(a, "is_fully_addressable", True):
    return np.asarray(a)
  return np.asarray(multihost_utils.process_allgather(a, tiled=True))


def _batches(n: int, batch: int):
  for lo in range(0, n, batch):
    yield lo, min(lo + batch, n)


def _pad_rows(x: np.ndarray, pad: int) -> np.ndarray:
  """x with its last row repeated `pad` more times."""
  return np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x


def _rules_context(mesh: jax.sharding.Mesh | None, rules: Rules | None):
  if mesh is None:
    return contextlib.nullcontext()
  return partitioning.axis_rules(mesh, partitioning.LOGICAL_AXIS_RULES if rules is None
                                 else rules)


def catalog_trie(table: trie_lib.CodeTable, level_offsets: Sequence[int], *,
                 prefix_tokens: Sequence[int] = (), dense_max_mb: float = 8.0,
                 mesh: jax.sharding.Mesh | None = None) -> trie_lib.Trie:
  """The full-catalog trie of an ID table, on device once (replicated on `mesh`),
  not transferred with every batch."""
  trie = trie_lib.trie_from_id_table(table, level_offsets, prefix_tokens=prefix_tokens,
                                     dense_max_mb=dense_max_mb)
  return jax.device_put(trie, None if mesh is None else jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec()))


def generate_items(model, params: Any, inputs: np.ndarray, constraint_fn: ConstraintFn, *,
                   decode_config: ml_collections.ConfigDict, num_results: int,
                   mesh: jax.sharding.Mesh | None = None, rules: Rules | None = None,
                   decode_fn: bs.DecodeFn = bs.beam_search) -> dict[str, np.ndarray]:
  """Runs the jitted search over all queries, `decode.batch_size` at a time.

  The last batch is padded (repeating its last query) so every call has the
  same shapes; with a mesh the batch is sharded on its 'data' axis.

  Args:
    model: genret_jax.model.network.Transformer.
    params: its parameters.
    inputs: int32[N, S] encoded queries.
    constraint_fn: (lo, hi, pad) -> the constraint for queries lo:hi padded by
      `pad` rows (a `Trie` ignores them; a `CandidateSet` is per batch).
    num_results: items returned per query.
    mesh: optional ('data', ...) mesh; rules: its logical axis rules (default
      partitioning.LOGICAL_AXIS_RULES).
    decode_fn: the search (see model_decode.search).
  Returns:
    {'items', 'scores', 'ranks': [N, R], 'beam_leaves', 'beam_scores': [N, K]}.
  """
  batch = int(decode_config.batch_size)
  if mesh is not None:
    data = mesh.shape["data"]
    batch = -(-batch // data) * data
  kwargs = model_decode.search_kwargs(decode_config, num_results)
  outs = []
  with _rules_context(mesh, rules):
    for lo, hi in _batches(len(inputs), batch):
      pad = batch - (hi - lo)
      x = np.asarray(_pad_rows(inputs[lo:hi], pad), np.int32)
      if mesh is not None:
        x = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
      out = model_decode.search_jit(model, params, x, constraint_fn(lo, hi, pad),
                                    decode_fn=decode_fn, **kwargs)
      outs.append(jax.tree.map(lambda a, n=hi - lo: _to_host(a)[:n], out))
  cat = lambda name: np.concatenate([getattr(o, name) for o in outs])
  return {name: cat(name) for name in ("items", "scores", "ranks", "beam_leaves",
                                        "beam_scores")}


def _invalid_id_rate(res: dict[str, np.ndarray]) -> float:
  """Fraction of live beams that are not an identifier."""
  alive = np.isfinite(res["beam_scores"])
  invalid = (res["beam_leaves"] < 0) & alive
  return float(invalid.sum() / max(alive.sum(), 1))


def decode_full(model, params: Any, inputs: np.ndarray, targets: np.ndarray,
                trie: trie_lib.Trie, *, decode_config: ml_collections.ConfigDict,
                ks: Sequence[int], mesh: jax.sharding.Mesh | None = None,
                rules: Rules | None = None,
                decode_fn: bs.DecodeFn = bs.beam_search) -> FullDecode:
  """Full protocol: decodes every query over the whole catalog (`trie`, e.g.
  from `catalog_trie`) and scores the top max(ks) items against the targets.

  Args:
    inputs: int32[Q, S]; targets: int[Q] (or int[Q, M], -1 padded).
  Returns:
    `FullDecode` (metrics, per-query metrics, items).
  """
  ks = tuple(int(k) for k in ks)
  res = generate_items(model, params, inputs, lambda lo, hi, pad: trie,
                       decode_config=decode_config, num_results=max(ks), mesh=mesh,
                       rules=rules, decode_fn=decode_fn)
  per_query = metrics_lib.per_query_metrics(res["items"], targets, ks, res["ranks"])
  out = {k: float(v.mean()) for k, v in per_query.items()}
  out["invalid_id_rate"] = _invalid_id_rate(res)
  return FullDecode(out, per_query, np.asarray(res["items"], np.int32))


def decode_sampled(model, params: Any, inputs: np.ndarray, targets: np.ndarray,
                   item_tokens: np.ndarray, candidates: np.ndarray, *,
                   prefix_tokens: Sequence[int] = (),
                   decode_config: ml_collections.ConfigDict, ks: Sequence[int],
                   mesh: jax.sharding.Mesh | None = None, rules: Rules | None = None,
                   decode_fn: bs.DecodeFn = bs.beam_search) -> dict[str, float]:
  """Sampled protocol: each query decodes over its own candidates only.

  Args:
    inputs: int32[Q, S]; targets: int[Q] (or int[Q, M]).
    item_tokens: int32[N, L] every item's ID tokens (codes + level offsets).
    candidates: int[Q, C] candidate items per query (-1 = padding).
  Returns:
    {metric: mean over queries} plus 'invalid_id_rate' (names unprefixed).
  Raises:
    ValueError: candidates without one row per query.
  """
  candidates = np.asarray(candidates, np.int32)
  if candidates.shape[0] != len(inputs):
    raise ValueError(f"evaluate_generative: candidates {candidates.shape} must have one row "
                     f"per query ({len(inputs)})")
  item_tokens = np.asarray(item_tokens, np.int32)
  prefix = np.asarray(prefix_tokens, np.int32).reshape(-1)

  def constraint_fn(lo, hi, pad):
    return _candidate_set(item_tokens, _pad_rows(candidates[lo:hi], pad), prefix)

  ks = tuple(int(k) for k in ks)
  res = generate_items(model, params, inputs, constraint_fn, decode_config=decode_config,
                       num_results=max(ks), mesh=mesh, rules=rules, decode_fn=decode_fn)
  out = metrics_lib.ranking_metrics(res["items"], targets, ks, res["ranks"])
  out["invalid_id_rate"] = _invalid_id_rate(res)
  return out


def _check_shapes(inputs: np.ndarray, targets: np.ndarray) -> None:
  if inputs.ndim != 2 or targets.shape[:1] != inputs.shape[:1] or len(inputs) == 0:
    raise ValueError(f"evaluate_generative: inputs {inputs.shape} must be [N, S] with N > 0 "
                     f"and targets {targets.shape} [N] or [N, M]")


def _sampled_candidates(targets: np.ndarray, num_items: int,
                        eval_config: ml_collections.ConfigDict) -> np.ndarray:
  """The target (the first, for several) + eval.num_negatives seeded negatives."""
  first = targets if targets.ndim == 1 else targets[:, 0]
  return metrics_lib.sample_negatives(num_items, first, int(eval_config.num_negatives),
                                      int(eval_config.negatives_seed))


def evaluate_generative(model, params: Any, inputs: np.ndarray, targets: np.ndarray,
                        id_table: trie_lib.CodeTable, level_offsets: Sequence[int], *,
                        prefix_tokens: Sequence[int] = (),
                        decode_config: ml_collections.ConfigDict | None = None,
                        eval_config: ml_collections.ConfigDict | None = None,
                        candidates: np.ndarray | None = None,
                        mesh: jax.sharding.Mesh | None = None, rules: Rules | None = None,
                        decode_fn: bs.DecodeFn = bs.beam_search) -> dict[str, float]:
  """Decodes item IDs for every query and scores them against the targets.

  Args:
    model: genret_jax.model.network.Transformer (its config fixes the dims).
    params: the model's 'params'.
    inputs: int32[N, S] encoded eval inputs (0 = padding).
    targets: int[N] target item per query (or int[N, M], -1 padded).
    id_table: the items' identifiers: an `ids.types.IdTable` or anything with
      `codes` int[num_items, L] and `level_sizes` (L ints).
    level_offsets: L token ids of code 0 of each level in the vocabulary.
    prefix_tokens: tokens forced before the ID (e.g. the behaviour token).
    decode_config / eval_config: the `decode` / `eval` config blocks
      (defaults: decoding.config).
    candidates: sampled protocol: int[N, C] candidate items per query (the
      target among them). Default: the target + eval.num_negatives uniform
      negatives (eval.negatives_seed).
    mesh: optional mesh; queries are sharded on its 'data' axis. rules: its
      logical axis rules (default partitioning.LOGICAL_AXIS_RULES).
    decode_fn: the search (T5X's decode_fn; default decoding.beam_search).
  Returns:
    Full protocol: 'recall@K', 'hr@K', 'ndcg@K', 'mrr' (K in eval.ks);
    sampled protocol: the same names prefixed 'sampled_'; plus
    '[sampled_]invalid_id_rate' (fraction of live beams that are not an ID; 0
    unless decode.mode is unconstrained) and 'num_queries'.
  Raises:
    ConfigError: bad `decode` / `eval` settings.
    ValueError: inconsistent shapes.
  """
  decode_config = decode_config or decoding_config.default_config()
  eval_config = eval_config or decoding_config.eval_config()
  decoding_config.validate(decode_config, eval_config)
  inputs, targets = np.asarray(inputs), np.asarray(targets)
  _check_shapes(inputs, targets)
  common = dict(decode_config=decode_config, ks=eval_config.ks, mesh=mesh, rules=rules,
                decode_fn=decode_fn)
  out: dict[str, float] = {}
  if eval_config.protocol in ("full", "both"):
    trie = catalog_trie(id_table, level_offsets, prefix_tokens=prefix_tokens,
                        dense_max_mb=float(decode_config.dense_max_mb), mesh=mesh)
    out.update(decode_full(model, params, inputs, targets, trie, **common).metrics)
  if eval_config.protocol in ("sampled", "both"):
    codes = np.asarray(id_table.codes)
    if candidates is None:
      candidates = _sampled_candidates(targets, codes.shape[0], eval_config)
    item_tokens = codes + np.asarray(level_offsets, np.int32)
    sampled = decode_sampled(model, params, inputs, targets, item_tokens, candidates,
                             prefix_tokens=prefix_tokens, **common)
    out.update({"sampled_" + k: v for k, v in sampled.items()})
  out["num_queries"] = float(len(inputs))
  return out
