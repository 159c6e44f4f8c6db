"""Full-catalog ranking metrics: Recall@K (= HR@K for one target) and NDCG@K.

The rank of a target is the number of catalog items scored strictly higher
(0 = top); ties therefore count in the target's favour for every model alike.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
  """{'recall@k', 'ndcg@k'} means over examples; ranks int[E], 0-based."""
  ranks = np.asarray(ranks)
  out = {}
  for k in ks:
    hit = ranks < k
    out[f"recall@{k}"] = float(hit.mean()) if ranks.size else 0.0
    out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean()) \
        if ranks.size else 0.0
  return out


def make_rank_fn(score_fn: Callable[[Any, jax.Array], jax.Array]) -> Callable:
  """Jitted (params, inputs [C, B, ...], targets [C, B]) -> int32[C, B] ranks.

  `score_fn(params, int32[B, ...]) -> float32[B, num_items]`; one lax.map over
  the C batches. Build it once per model so evaluations reuse the compilation.
  """
  @jax.jit
  def run(params, xin, tgt):
    def one(args):
      x, t = args
      s = score_fn(params, x)
      ts = jnp.take_along_axis(s, t[:, None], axis=1)
      return jnp.sum(s > ts, axis=1).astype(jnp.int32)
    return jax.lax.map(one, (xin, tgt))
  return run


def batched_ranks(rank_fn: Callable, params: Any, inputs: np.ndarray, targets: np.ndarray,
                  batch_size: int = 256) -> np.ndarray:
  """0-based ranks int32[E] of targets (int32[E]) given inputs (int32[E, ...]).

  Pads E to whole batches (repeating row 0) so the shapes stay static.
  """
  e = inputs.shape[0]
  if e == 0:
    return np.zeros(0, np.int32)
  batch_size = min(batch_size, e)
  num = -(-e // batch_size)
  pad = num * batch_size - e
  xin = np.concatenate([inputs, np.repeat(inputs[:1], pad, 0)]).reshape(
      (num, batch_size) + inputs.shape[1:])
  tgt = np.concatenate([targets, np.zeros(pad, targets.dtype)]).reshape(num, batch_size)
  return np.asarray(rank_fn(params, jnp.asarray(xin), jnp.asarray(tgt))).reshape(-1)[:e]
