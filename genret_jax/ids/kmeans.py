"""Memory-lean k-means and Sinkhorn-balanced assignment in jitted JAX.

Every pass over the points runs as a `lax.scan` over fixed-size row chunks, so
the largest temporary is `float32[chunk, K]` whatever the number of points
(1M x 64 points with K = 256 and chunk = 16,384 peak at a few hundred MB).
Everything is deterministic given the PRNG key.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class KMeansResult(NamedTuple):
  centers: jax.Array   # float32[K, d]
  codes: jax.Array     # int32[N]
  inertia: jax.Array   # float32[], mean squared distance to the assigned center
  iterations: jax.Array  # int32[], Lloyd iterations run


def _chunked(x: jax.Array, chunk: int) -> tuple[jax.Array, jax.Array]:
  """float[N, d] -> (float[C, chunk, d], bool[C, chunk] validity mask)."""
  n = x.shape[0]
  chunk = min(chunk, n)
  num = -(-n // chunk)
  pad = num * chunk - n
  xc = jnp.pad(x, ((0, pad), (0, 0))).reshape(num, chunk, x.shape[1])
  mask = (jnp.arange(num * chunk) < n).reshape(num, chunk)
  return xc, mask


def sq_distances(x: jax.Array, centers: jax.Array) -> jax.Array:
  """float32[n, d], float32[K, d] -> float32[n, K] squared Euclidean distances."""
  d = (jnp.sum(x * x, axis=1, keepdims=True) - 2.0 * x @ centers.T
       + jnp.sum(centers * centers, axis=1)[None, :])
  return jnp.maximum(d, 0.0)


def _assign(x: jax.Array, centers: jax.Array, chunk: int) -> tuple[jax.Array, jax.Array]:
  """Nearest center per point: (int32[N], float32[N] squared distance)."""
  n = x.shape[0]
  xc, _ = _chunked(x, chunk)

  def one(block):
    d = sq_distances(block, centers)
    return jnp.argmin(d, axis=1).astype(jnp.int32), jnp.min(d, axis=1)

  codes, dist = jax.lax.map(one, xc)
  return codes.reshape(-1)[:n], dist.reshape(-1)[:n]


@functools.partial(jax.jit, static_argnames=("chunk",))
def assign(x: jax.Array, centers: jax.Array, chunk: int = 16384):
  """Jitted nearest-center assignment: (int32[N], float32[N])."""
  return _assign(x, centers, chunk)


def _kmeans_plus_plus(key: jax.Array, x: jax.Array, k: int) -> jax.Array:
  """k-means++ seeding (D^2 sampling) over the rows of x: float32[k, d]."""
  n = x.shape[0]
  key, first_key = jax.random.split(key)
  first = jax.random.randint(first_key, (), 0, n)
  centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
  min_d = jnp.sum((x - x[first]) ** 2, axis=1)

  def body(j, carry):
    centers, min_d = carry
    total = jnp.sum(min_d)
    # All remaining mass zero (fewer distinct points than k): pick uniformly.
    logits = jnp.where(total > 0, jnp.log(jnp.maximum(min_d, 1e-30)) +
                       jnp.where(min_d > 0, 0.0, -jnp.inf), 0.0)
    idx = jax.random.categorical(jax.random.fold_in(key, j), logits)
    c = x[idx]
    return centers.at[j].set(c), jnp.minimum(min_d, jnp.sum((x - c) ** 2, axis=1))

  centers, _ = jax.lax.fori_loop(1, k, body, (centers, min_d))
  return centers


def _lloyd_step(xc: jax.Array, mask: jax.Array, n: int, centers: jax.Array):
  """One Lloyd update over pre-chunked points (xc float32[C, chunk, d], mask
  bool[C, chunk]); empty clusters move to the points farthest from their center."""
  k = centers.shape[0]

  def body(carry, inputs):
    sums, counts = carry
    block, m = inputs
    d = sq_distances(block, centers)
    a = jnp.argmin(d, axis=1)
    w = m.astype(xc.dtype)
    sums = sums + jax.ops.segment_sum(block * w[:, None], a, num_segments=k)
    counts = counts + jax.ops.segment_sum(w, a, num_segments=k)
    return (sums, counts), jnp.where(m, jnp.min(d, axis=1), -1.0)

  init = (jnp.zeros_like(centers), jnp.zeros((k,), xc.dtype))
  (sums, counts), dist = jax.lax.scan(body, init, (xc, mask))
  dist = dist.reshape(-1)                  # padding rows are -1: never the farthest
  empty = counts == 0
  far = jax.lax.top_k(dist, min(k, n))[1]
  rank = jnp.clip(jnp.cumsum(empty) - 1, 0, far.shape[0] - 1)
  reseed = xc.reshape(-1, xc.shape[-1])[far[rank]]
  new = jnp.where(empty[:, None], reseed, sums / jnp.maximum(counts, 1.0)[:, None])
  return new, jnp.sum(jnp.maximum(dist, 0.0)) / n


@functools.partial(jax.jit, static_argnames=("k", "iters", "chunk", "init_sample"))
def kmeans(key: jax.Array, x: jax.Array, k: int, iters: int = 50, tol: float = 1e-6,
           chunk: int = 16384, init_sample: int = 65536) -> KMeansResult:
  """Lloyd's k-means with k-means++ seeding (on <= init_sample random rows).

  Args:
    key: PRNG key (the result is a deterministic function of it and x).
    x: float32[N, d].
    k: number of centers.
    iters: maximum Lloyd iterations; stops early when the mean squared
      center shift falls below `tol` times the data variance.
  Returns:
    KMeansResult with codes from the final centers.
  """
  x = x.astype(jnp.float32)
  n = x.shape[0]
  init_key, sample_key = jax.random.split(key)
  if n > init_sample:
    rows = jax.random.choice(sample_key, n, (init_sample,), replace=False)
    seed_x = x[rows]
  else:
    seed_x = x
  centers = _kmeans_plus_plus(init_key, seed_x, k)
  scale = jnp.maximum(jnp.mean(jnp.var(x, axis=0)), 1e-12)
  xc, mask = _chunked(x, chunk)              # padded once, outside the loop

  def cond(state):
    i, _, shift = state
    return (i < iters) & (shift > tol * scale)

  def body(state):
    i, centers, _ = state
    new, _ = _lloyd_step(xc, mask, n, centers)
    return i + 1, new, jnp.mean(jnp.sum((new - centers) ** 2, axis=1))

  iterations, centers, _ = jax.lax.while_loop(
      cond, body, (jnp.int32(0), centers, jnp.float32(jnp.inf)))
  codes, dist = _assign(x, centers, chunk)
  return KMeansResult(centers, codes, jnp.mean(dist), iterations)


def _sinkhorn_codes(x: jax.Array, mask: jax.Array, centers: jax.Array, eps: float,
                    iters: int, chunk: int) -> jax.Array:
  """Balanced assignment of the masked rows of x to centers (see sinkhorn_assign)."""
  k = centers.shape[0]
  n = x.shape[0]
  xc, cmask = _chunked(x, chunk)
  cmask = cmask & jnp.pad(mask, (0, cmask.size - n)).reshape(cmask.shape)
  count = jnp.maximum(jnp.sum(mask), 1).astype(jnp.float32)

  def minmax(carry, inputs):
    block, m = inputs
    d = sq_distances(block, centers)
    lo = jnp.min(jnp.where(m[:, None], d, jnp.inf))
    hi = jnp.max(jnp.where(m[:, None], d, -jnp.inf))
    return (jnp.minimum(carry[0], lo), jnp.maximum(carry[1], hi)), None

  (lo, hi), _ = jax.lax.scan(minmax, (jnp.float32(jnp.inf), jnp.float32(-jnp.inf)), (xc, cmask))
  mid = (hi + lo) / 2
  amplitude = hi - mid + 1e-5

  def log_kernel(block):
    return -(sq_distances(block, centers) - mid) / amplitude / eps   # [chunk, K]

  log_a = -jnp.log(count)
  log_b = -jnp.log(jnp.float32(k))

  def iteration(_, g):
    def body(lse, inputs):
      block, m = inputs
      lk = log_kernel(block)
      f = log_a - jax.nn.logsumexp(lk + g[None, :], axis=1)          # [chunk]
      col = jnp.where(m[:, None], lk + f[:, None], -jnp.inf)
      return jnp.logaddexp(lse, jax.nn.logsumexp(col, axis=0)), None
    lse, _ = jax.lax.scan(body, jnp.full((k,), -jnp.inf), (xc, cmask))
    return log_b - lse

  g = jax.lax.fori_loop(0, iters, iteration, jnp.zeros((k,), jnp.float32))

  def final(block):
    return jnp.argmax(log_kernel(block) + g[None, :], axis=1).astype(jnp.int32)

  return jax.lax.map(final, xc).reshape(-1)[:n]


@functools.partial(jax.jit, static_argnames=("iters", "chunk"))
def sinkhorn_assign(x: jax.Array, centers: jax.Array, mask: jax.Array | None = None,
                    eps: float = 0.003, iters: int = 50, chunk: int = 16384) -> jax.Array:
  """Balanced (optimal-transport) assignment: int32[N] codes.

  Distances are centred and scaled to [-1, 1] over the masked rows (as in the
  GenSAR / LC-Rec code), then log-domain Sinkhorn with uniform marginals (each
  row mass 1/N, each center mass 1/K) runs `iters` iterations; each row takes
  the center with the largest transport mass. Rows where mask is False take
  part in nothing (their output code is still their argmax, to be ignored).
  """
  x = x.astype(jnp.float32)
  if mask is None:
    mask = jnp.ones((x.shape[0],), bool)
  return _sinkhorn_codes(x, mask, centers.astype(jnp.float32), eps, iters, chunk)


@functools.partial(jax.jit, static_argnames=("iters",))
def sinkhorn_assign_groups(x: jax.Array, mask: jax.Array, centers: jax.Array,
                           eps: float = 0.003, iters: int = 50) -> jax.Array:
  """Independent balanced assignments of padded groups.

  Args:
    x: float32[G, M, d] group members (padded); mask: bool[G, M].
    centers: float32[K, d].
  Returns:
    int32[G, M] codes (padding rows meaningless).
  """
  fn = lambda xg, mg: _sinkhorn_codes(xg, mg, centers, eps, iters, x.shape[1])
  return jax.vmap(fn)(x.astype(jnp.float32), mask)


def balanced_fraction(codes: np.ndarray, k: int) -> float:
  """Size of the largest cluster over the ideal N/K (1.0 = perfectly balanced)."""
  counts = np.bincount(np.asarray(codes), minlength=k)
  return float(counts.max() / (len(codes) / k))
