"""One call from a trained model + eval inputs to retrieval metrics."""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from genret_jax.decoding import candidates as cand_lib
from genret_jax.decoding import config as decoding_config
from genret_jax.decoding import model_decode
from genret_jax.decoding import trie as trie_lib
from genret_jax.evaluation import metrics as metrics_lib
from genret_jax.ids.types import IdTable


_candidate_set = jax.jit(cand_lib.candidate_set)


def _to_host(a: jax.Array) -> np.ndarray:
  """The whole array on this host; across processes, gathered from every one."""
  if getattr(a, "is_fully_addressable", True):
    return np.asarray(a)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(a, tiled=True))


def _batches(n: int, batch: int):
  for lo in range(0, n, batch):
    yield lo, min(lo + batch, n)


def generate_items(model, params: Any, inputs: np.ndarray, constraint_fn, *,
                   decode_config: ml_collections.ConfigDict, num_results: int,
                   mesh: jax.sharding.Mesh | None = None) -> dict[str, np.ndarray]:
  """Runs the jitted beam search over all queries, `decode.batch_size` at a time.

  The last batch is padded (repeating its last query) so every call has the
  same shapes; with a mesh the batch is sharded on its 'data' axis.

  Args:
    model: genret_jax.model.network.Transformer.
    params: its parameters.
    inputs: int32[N, S] encoded queries.
    constraint_fn: (lo, hi, pad) -> the constraint for queries lo:hi padded by
      `pad` rows (a `Trie` ignores them; a `CandidateSet` is per batch).
    num_results: items returned per query.
    mesh: optional ('data', ...) mesh.
  Returns:
    {'items', 'scores', 'ranks': [N, R], 'beam_leaves', 'beam_scores': [N, K]}.
  """
  from genret_jax.model import partitioning  # pylint: disable=g-import-not-at-top
  batch = int(decode_config.batch_size)
  if mesh is not None:
    data = mesh.shape["data"]
    batch = -(-batch // data) * data
  kwargs = model_decode.search_kwargs(decode_config, num_results)
  outs = []
  ctx = partitioning.axis_rules(mesh) if mesh is not None else contextlib.nullcontext()
  with ctx:
    for lo, hi in _batches(len(inputs), batch):
      x = inputs[lo:hi]
      pad = batch - (hi - lo)
      if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
      x = np.asarray(x, np.int32)
      if mesh is not None:
        x = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
      out = model_decode.search_jit(model, params, x, constraint_fn(lo, hi, pad), **kwargs)
      outs.append(jax.tree.map(lambda a, n=hi - lo: _to_host(a)[:n], out))
  cat = lambda name: np.concatenate([getattr(o, name) for o in outs])
  return {name: cat(name) for name in ("items", "scores", "ranks", "beam_leaves",
                                        "beam_scores")}


def evaluate_generative(model, params: Any, inputs: np.ndarray, targets: np.ndarray,
                        id_table: IdTable, level_offsets: Sequence[int], *,
                        prefix_tokens: Sequence[int] = (),
                        decode_config: ml_collections.ConfigDict | None = None,
                        eval_config: ml_collections.ConfigDict | None = None,
                        candidates: np.ndarray | None = None,
                        mesh: jax.sharding.Mesh | None = None) -> dict[str, float]:
  """Decodes item IDs for every query and scores them against the targets.

  Args:
    model: genret_jax.model.network.Transformer (its config fixes the dims).
    params: the model's 'params'.
    inputs: int32[N, S] encoded eval inputs (0 = padding).
    targets: int[N] target item per query (or int[N, M], -1 padded).
    id_table: the IdTable the task writes items with (codes [num_items, L]).
    level_offsets: L token ids of code 0 of each level in the vocabulary.
    prefix_tokens: tokens forced before the ID (e.g. the behaviour token).
    decode_config / eval_config: the `decode` / `eval` config blocks
      (defaults: decoding.config).
    candidates: sampled protocol: int[N, C] candidate items per query (the
      target among them). Default: the target + eval.num_negatives uniform
      negatives (eval.negatives_seed).
    mesh: optional mesh; queries are sharded on its 'data' axis.
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
  inputs = np.asarray(inputs)
  targets = np.asarray(targets)
  if inputs.ndim != 2 or targets.shape[:1] != inputs.shape[:1] or len(inputs) == 0:
    raise ValueError(f"evaluate_generative: inputs {inputs.shape} must be [N, S] with N > 0 "
                     f"and targets {targets.shape} [N] or [N, M]")
  ks = tuple(int(k) for k in eval_config.ks)
  num_results = max(ks)
  out: dict[str, float] = {}
  protocols = (("full", "sampled") if eval_config.protocol == "both"
               else (eval_config.protocol,))
  for protocol in protocols:
    if protocol == "full":
      trie = trie_lib.trie_from_id_table(id_table, level_offsets, prefix_tokens=prefix_tokens,
                                         dense_max_mb=float(decode_config.dense_max_mb))
      # on device once (replicated), not transferred with every batch.
      trie = jax.device_put(trie, None if mesh is None else jax.sharding.NamedSharding(
          mesh, jax.sharding.PartitionSpec()))
      constraint_fn = lambda lo, hi, pad: trie
      prefix = ""
    else:
      cands = candidates
      if cands is None:
        first = targets if targets.ndim == 1 else targets[:, 0]
        cands = metrics_lib.sample_negatives(id_table.codes.shape[0], first,
                                             int(eval_config.num_negatives),
                                             int(eval_config.negatives_seed))
      cands = np.asarray(cands, np.int32)
      if cands.shape[0] != len(inputs):
        raise ValueError(f"evaluate_generative: candidates {cands.shape} must have one row "
                         f"per query ({len(inputs)})")
      item_tokens = (id_table.codes + np.asarray(level_offsets, np.int32)).astype(np.int32)
      prefix_arr = np.asarray(prefix_tokens, np.int32).reshape(-1)

      def constraint_fn(lo, hi, pad, cands=cands):
        c = cands[lo:hi]
        if pad:
          c = np.concatenate([c, np.repeat(c[-1:], pad, axis=0)])
        return _candidate_set(item_tokens, c, prefix_arr)
      prefix = "sampled_"
    res = generate_items(model, params, inputs, constraint_fn, decode_config=decode_config,
                         num_results=num_results, mesh=mesh)
    m = metrics_lib.ranking_metrics(res["items"], targets, ks, res["ranks"])
    out.update({prefix + k: v for k, v in m.items()})
    alive = np.isfinite(res["beam_scores"])
    invalid = (res["beam_leaves"] < 0) & alive
    out[prefix + "invalid_id_rate"] = float(invalid.sum() / max(alive.sum(), 1))
  out["num_queries"] = float(len(inputs))
  return out
