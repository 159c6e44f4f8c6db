"""Ranking metrics of scoring baselines: Recall@K (= HR@K for one target), NDCG@K, MRR.

Full protocol: the target is ranked against the whole catalog. Sampled protocol
(GenSAR's 1 + 99): against its query's candidates only (int[Q, C], the target
among them, e.g. `PreparedDataset.candidates()`). Either way a target scored
below `above` items and tied with `ties` others sits at each 0-based position
in [above, above + ties] with equal probability; metrics are the expectation
over that (the tie rule of genret_jax.evaluation.metrics).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from genret_jax.evaluation import metrics as metrics_lib


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int],
                       ties: np.ndarray | None = None) -> dict[str, float]:
  """{'recall@k', 'hr@k', 'ndcg@k', 'mrr'} means over examples (0.0 when there are none).

  Args:
    ranks: int[E], items scored strictly higher than the target.
    ties: int[E], other items with exactly the target's score (default none).
  """
  ranks = np.asarray(ranks, np.int64)
  if not ranks.size:
    return {**{f"{m}@{k}": 0.0 for m in ("recall", "hr", "ndcg") for k in ks}, "mrr": 0.0}
  ties = np.zeros_like(ranks) if ties is None else np.asarray(ties, np.int64)
  per_query = metrics_lib.tie_group_metrics(ranks, ties + 1, ks)
  return {name: float(v.mean()) for name, v in per_query.items()}


def check_candidates(candidates: np.ndarray, targets: np.ndarray, num_items: int) -> np.ndarray:
  """int64[Q, C] candidates; raises ValueError unless each row holds its target exactly
  once and only item indices in [0, num_items)."""
  candidates = np.asarray(candidates, np.int64)
  targets = np.asarray(targets, np.int64)
  if candidates.ndim != 2 or candidates.shape[0] != targets.shape[0]:
    raise ValueError(f"candidates shape {candidates.shape} must be [{targets.shape[0]}, C]")
  if candidates.size and (candidates.min() < 0 or candidates.max() >= num_items):
    raise ValueError(f"candidates must be item indices in [0, {num_items})")
  hits = (candidates == targets[:, None]).sum(1)
  if (hits != 1).any():
    q = int(np.argmax(hits != 1))
    raise ValueError(f"query {q}: its target {targets[q]} is {hits[q]} times among its "
                     "candidates (needs exactly once)")
  return candidates


def candidate_ranks(candidate_scores: np.ndarray, target_scores: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Sampled protocol: (int64[Q] candidates scored above the target, int64[Q] other
  candidates tied with it) from float[Q, C] candidate scores (the target among them)
  and float[Q] the target's score."""
  cs = np.asarray(candidate_scores)
  ts = np.asarray(target_scores)[:, None]
  return (cs > ts).sum(1).astype(np.int64), (cs == ts).sum(1).astype(np.int64) - 1


def make_rank_fn(score_fn: Callable[[Any, jax.Array], jax.Array]) -> Callable:
  """Jitted (params, inputs [C, B, ...], targets [C, B]) -> int32[C, B, 2]
  (items scored above the target, other items tied with it).

  `score_fn(params, int32[B, ...]) -> float32[B, num_items]`; one lax.map over
  the C batches. Build it once per model so evaluations reuse the compilation.
  """
  @jax.jit
  def run(params, xin, tgt):
    def one(args):
      x, t = args
      s = score_fn(params, x)
      ts = jnp.take_along_axis(s, t[:, None], axis=1)
      return jnp.stack([jnp.sum(s > ts, axis=1), jnp.sum(s == ts, axis=1) - 1],
                       axis=1).astype(jnp.int32)
    return jax.lax.map(one, (xin, tgt))
  return run


def make_candidate_rank_fn(score_fn: Callable[[Any, jax.Array], jax.Array]) -> Callable:
  """Sampled protocol: jitted (params, inputs [C, B, ...], targets [C, B], candidates
  [C, B, M]) -> int32[C, B, 2] (candidates scored above the target, other candidates
  tied with it); each candidate row holds its target once (see check_candidates).

  Same contract as `make_rank_fn` otherwise; use it through `batched_ranks(...,
  candidates=...)`.
  """
  @jax.jit
  def run(params, xin, tgt, cands):
    def one(args):
      x, t, c = args
      s = score_fn(params, x)
      ts = jnp.take_along_axis(s, t[:, None], axis=1)
      cs = jnp.take_along_axis(s, c, axis=1)
      return jnp.stack([jnp.sum(cs > ts, axis=1), jnp.sum(cs == ts, axis=1) - 1],
                       axis=1).astype(jnp.int32)
    return jax.lax.map(one, (xin, tgt, cands))
  return run


def batched_ranks(rank_fn: Callable, params: Any, inputs: np.ndarray, targets: np.ndarray,
                  batch_size: int = 256, candidates: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
  """(int32[E] items scored above, int32[E] items tied) for each target
  (int32[E]) given inputs (int32[E, ...]).

  With `candidates` (int[E, M], each row holding its target; `rank_fn` from
  `make_candidate_rank_fn`) only those items are ranked (sampled protocol);
  else every item (`rank_fn` from `make_rank_fn`). Pads E to whole batches
  (repeating row 0) so the shapes stay static.
  """
  e = inputs.shape[0]
  if e == 0:
    return np.zeros(0, np.int32), np.zeros(0, np.int32)
  batch_size = min(batch_size, e)
  num = -(-e // batch_size)
  pad = num * batch_size - e

  def batches(a: np.ndarray, fill: np.ndarray) -> jax.Array:
    a = np.concatenate([a, np.repeat(fill, pad, 0)])
    return jnp.asarray(a.reshape((num, batch_size) + a.shape[1:]))

  args = [batches(inputs, inputs[:1]), batches(targets, np.zeros(1, targets.dtype))]
  if candidates is not None:
    candidates = np.asarray(candidates, np.int32)
    args.append(batches(candidates, candidates[:1]))
    # padded rows: target 0 may be absent from row 0's candidates; they are cut off below.
  out = np.asarray(rank_fn(params, *args)).reshape(-1, 2)[:e]
  return out[:, 0], out[:, 1]
