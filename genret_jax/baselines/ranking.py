"""Full-catalog ranking metrics: Recall@K (= HR@K for one target) and NDCG@K.

A target scored below `above` items and tied with `ties` others sits at each
0-based position in [above, above + ties] with equal probability; metrics are
the expectation over that (the tie rule of genret_jax.evaluation.metrics).
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


def batched_ranks(rank_fn: Callable, params: Any, inputs: np.ndarray, targets: np.ndarray,
                  batch_size: int = 256) -> np.ndarray:
  """(int32[E] items scored above, int32[E] items tied) for each target
  (int32[E]) given inputs (int32[E, ...]).

  Pads E to whole batches (repeating row 0) so the shapes stay static.
  """
  e = inputs.shape[0]
  if e == 0:
    return np.zeros(0, np.int32), np.zeros(0, np.int32)
  batch_size = min(batch_size, e)
  num = -(-e // batch_size)
  pad = num * batch_size - e
  xin = np.concatenate([inputs, np.repeat(inputs[:1], pad, 0)]).reshape(
      (num, batch_size) + inputs.shape[1:])
  tgt = np.concatenate([targets, np.zeros(pad, targets.dtype)]).reshape(num, batch_size)
  out = np.asarray(rank_fn(params, jnp.asarray(xin), jnp.asarray(tgt))).reshape(-1, 2)[:e]
  return out[:, 0], out[:, 1]
