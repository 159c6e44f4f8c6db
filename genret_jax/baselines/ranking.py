"""Full-catalog ranking metrics: Recall@K (= HR@K for one target) and NDCG@K.

The rank of a target is the number of catalog items scored strictly higher
(0 = top); ties therefore count in the target's favour for every model alike.
"""

from __future__ import annotations

from typing import Callable, Sequence

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


def batched_ranks(score_fn: Callable[[jax.Array], jax.Array], inputs: np.ndarray,
                  targets: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """Ranks of targets under score_fn, one jitted lax.map over fixed-size batches.

  Args:
    score_fn: int32[B, ...] inputs -> float32[B, num_items] scores.
    inputs: int32[E, ...]; targets: int32[E] item indices.
  Returns:
    int32[E] 0-based ranks.
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

  @jax.jit
  def run(xin, tgt):
    def one(args):
      x, t = args
      s = score_fn(x)
      ts = jnp.take_along_axis(s, t[:, None], axis=1)
      return jnp.sum(s > ts, axis=1).astype(jnp.int32)
    return jax.lax.map(one, (xin, tgt))

  return np.asarray(run(jnp.asarray(xin), jnp.asarray(tgt))).reshape(-1)[:e]
