"""RQ-KMeans: residual k-means over item embeddings (+ optional dedup level)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from genret_jax.ids import kmeans as km
from genret_jax.ids import stats


@dataclasses.dataclass(frozen=True)
class ResidualCodes:
  """Output of a residual quantizer.

  Attributes:
    codes: int32[N, L] codes per level (without any dedup level).
    codebooks: float32[L, K, d] centers per level.
    recon_error: float[L], mean squared error ||x - sum_{l' <= l} c_l'||^2
      after each level (non-increasing for k-means).
  """
  codes: np.ndarray
  codebooks: np.ndarray
  recon_error: np.ndarray


def rq_kmeans(x: np.ndarray, levels: int = 3, codebook_size: int = 256, *, seed: int = 0,
              iterations: int = 50, balanced: bool = False, chunk: int = 16384,
              sinkhorn_eps: float = 0.003, sinkhorn_iters: int = 50) -> ResidualCodes:
  """Residual k-means: level l clusters the residual left by levels < l.

  Args:
    x: float[N, d] item embeddings.
    levels, codebook_size: L and K.
    seed: the result is a deterministic function of (x, seed, settings).
    balanced: assign each level with Sinkhorn-balanced transport instead of
      nearest center (centers from plain k-means; residuals use the balanced codes).
  """
  residual = jnp.asarray(x, jnp.float32)
  key = jax.random.PRNGKey(seed)
  codes, books, errors = [], [], []
  for level in range(levels):
    res = km.kmeans(jax.random.fold_in(key, level), residual, codebook_size,
                    iters=iterations, chunk=chunk)
    level_codes = res.codes
    if balanced:
      level_codes = km.sinkhorn_assign(residual, res.centers, eps=sinkhorn_eps,
                                       iters=sinkhorn_iters, chunk=chunk)
    residual = residual - res.centers[level_codes]
    codes.append(np.asarray(level_codes, np.int32))
    books.append(np.asarray(res.centers))
    errors.append(float(jnp.mean(jnp.sum(residual * residual, axis=1))))
  return ResidualCodes(np.stack(codes, axis=1), np.stack(books), np.asarray(errors))


def with_dedup(codes: np.ndarray, sizes: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
  """Appends TIGER's dedup level: (int32[N, L+1], sizes + (max group size,))."""
  extra, size = stats.dedup_level(codes)
  return np.concatenate([codes, extra[:, None]], axis=1).astype(np.int32), sizes + (size,)
