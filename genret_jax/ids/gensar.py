"""GenSAR dual identifiers (Shi et al. 2025), following /work/shared/REFERENCE.md.

    x_sem -> MLP -> z_s (32-d)      x_col -> MLP -> z_c (32-d)
    z = [z_s ; z_c] (64-d) -> 2 shared codebooks (256 x 64-d), residual r
    r[:32] -> 2 semantic codebooks (256 x 32-d)
    r[32:] -> 2 collaborative codebooks (256 x 32-d)
    x_sem^ = dec_s(q_shared[:32] + q_sem)   x_col^ = dec_c(q_shared[32:] + q_col)

Loss = MSE(x_sem^, x_sem) + MSE(x_col^, x_col) + mean over the 6 VQ layers of
(||sg[r] - e||^2 + beta ||r - sg[e]||^2). Codebooks start from k-means on the
first minibatch's latents; the last level of each specific branch assigns with
Sinkhorn during training; the parameters with the lowest collision rate seen
at the periodic checks are kept. Collisions within each table are then
re-assigned on that table's last specific level, each colliding group with its
own Sinkhorn-balanced assignment, for up to `collision_rounds` rounds; what
remains is reported (no extra token).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genret_jax.ids import kmeans as km
from genret_jax.ids import rq_kmeans as rqk
from genret_jax.ids import stats
from genret_jax.ids import vq


@dataclasses.dataclass(frozen=True)
class GenSARResult:
  """shared int32[N, S]; semantic, collaborative int32[N, P] (after collision
  handling); *_before: the same before it; rounds: rounds run per table;
  losses float[epochs]; best_epoch: epoch whose parameters were kept;
  seconds: wall time of training and of collision handling."""
  shared: np.ndarray
  semantic: np.ndarray
  collaborative: np.ndarray
  semantic_before: np.ndarray
  collaborative_before: np.ndarray
  rounds: dict
  losses: np.ndarray
  best_epoch: int
  params: Any
  seconds: dict


def _pow2(n: int) -> int:
  return 1 << max(0, int(n) - 1).bit_length()


def resolve_collisions(prefix: np.ndarray, codes: np.ndarray, last_in: np.ndarray,
                       codebook: np.ndarray, *, rounds: int = 20, eps: float = 0.003,
                       iters: int = 50) -> tuple[np.ndarray, int]:
  """Re-assigns the last level of colliding IDs with per-group Sinkhorn.

  Args:
    prefix: int[N, S] codes before the specific levels (shared codes).
    codes: int[N, P] specific codes; the last column is re-assigned.
    last_in: float[N, D] residual entering the last specific level.
    codebook: float[K, D] last specific level's codebook.
  Returns:
    (int32[N, P] new specific codes, rounds run).
  """
  codes = np.array(codes, np.int32)
  book = jnp.asarray(codebook, jnp.float32)
  n = codes.shape[0]
  # settled[i] = signature (smallest member, size) of the group item i was in
  # when a re-assignment left that group unchanged; such a group, met again
  # with the same members, is at a fixed point (the assignment is deterministic).
  settled = np.full(n, -1, np.int64)
  done = 0
  for done in range(1, rounds + 1):
    inverse, counts = stats.group_index(np.concatenate([prefix, codes], axis=1))
    colliding = np.flatnonzero(counts[inverse] > 1)
    order = colliding[np.argsort(inverse[colliding], kind="stable")]
    _, starts, sizes = np.unique(inverse[order], return_index=True, return_counts=True)
    signature = np.repeat(np.minimum.reduceat(order, starts) * (n + 1) + sizes, sizes) \
        if order.size else np.zeros(0, np.int64)
    same = settled[order] == signature
    live = ~np.repeat(np.logical_and.reduceat(same, starts), sizes) if order.size else same
    if not live.any():
      return codes, done - 1
    order, signature = order[live], signature[live]
    _, starts, sizes = np.unique(inverse[order], return_index=True, return_counts=True)
    new_last = codes[order, -1].copy()
    # Groups are padded per power-of-two size bucket, so one large group does
    # not inflate the work of the many pairs.
    bucket = np.left_shift(1, np.ceil(np.log2(sizes)).astype(np.int64))
    for m in np.unique(bucket):
      sel = np.flatnonzero(bucket == m)
      g = _pow2(len(sel))
      row = np.repeat(np.arange(len(sel)), sizes[sel])
      slot = np.arange(row.size) - np.repeat(np.cumsum(sizes[sel]) - sizes[sel], sizes[sel])
      pos = np.repeat(starts[sel], sizes[sel]) + slot
      idx = np.zeros((g, m), np.int64)
      mask = np.zeros((g, m), bool)
      idx[row, slot] = order[pos]
      mask[row, slot] = True
      new = np.asarray(km.sinkhorn_assign_groups(jnp.asarray(last_in[idx]), jnp.asarray(mask),
                                                 book, eps=eps, iters=iters))
      new_last[pos] = new[row, slot]
    unchanged = np.repeat(np.logical_and.reduceat(codes[order, -1] == new_last, starts), sizes)
    settled[order] = np.where(unchanged, signature, -1)
    codes[order, -1] = new_last
  return codes, done


@dataclasses.dataclass(frozen=True)
class _Spec:
  """Everything the jitted functions close over (hashable: compiled once per spec)."""
  n: int
  sem_dim: int
  col_dim: int
  latent_dim: int
  hidden: tuple[int, ...]
  shared_levels: int
  specific_levels: int
  beta: float
  batch_size: int
  learning_rate: float
  weight_decay: float
  clip_norm: float
  sinkhorn_eps: float
  sinkhorn_iters: int

  def modules(self):
    return (vq.MLP(self.hidden + (self.latent_dim,)),
            vq.MLP(tuple(reversed(self.hidden)) + (self.sem_dim,)),
            vq.MLP(tuple(reversed(self.hidden)) + (self.col_dim,)))

  def optimizer(self) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(self.clip_norm),
                       optax.adamw(self.learning_rate, weight_decay=self.weight_decay))


def _latents(spec: _Spec, p, a, b):
  enc, _, _ = spec.modules()
  return jnp.concatenate([enc.apply(p["enc_sem"], a), enc.apply(p["enc_col"], b)], axis=1)


def _forward(spec: _Spec, p, a, b, sinkhorn: bool):
  """(loss, (shared, semantic, collaborative codes, last-level residuals sem / col))."""
  _, dec_s, dec_c = spec.modules()
  d, beta = spec.latent_dim, spec.beta
  z = _latents(spec, p, a, b)
  sh_codes, q_sh, l_sh, _ = vq.residual_quantize(z, p["shared"], beta)
  r = z - q_sh
  sk = (False,) * (spec.specific_levels - 1) + (True,) if sinkhorn else ()
  kw = dict(eps=spec.sinkhorn_eps, iters=spec.sinkhorn_iters)
  s_codes, q_s, l_s, s_last = vq.residual_quantize(r[:, :d], p["sem"], beta, sk, **kw)
  c_codes, q_c, l_c, c_last = vq.residual_quantize(r[:, d:], p["col"], beta, sk, **kw)
  zs_hat = vq.straight_through(z[:, :d], q_sh[:, :d] + q_s)
  zc_hat = vq.straight_through(z[:, d:], q_sh[:, d:] + q_c)
  recon = (jnp.mean((dec_s.apply(p["dec_sem"], zs_hat) - a) ** 2)
           + jnp.mean((dec_c.apply(p["dec_col"], zc_hat) - b) ** 2))
  vq_loss = jnp.mean(jnp.concatenate([l_sh, l_s, l_c]))
  return recon + vq_loss, (sh_codes, s_codes, c_codes, s_last, c_last)


@functools.lru_cache(maxsize=8)
def _compiled(spec: _Spec):
  """(jitted epoch fn, jitted all-items assignment fn) for a spec."""
  loss_fn = lambda p, _key, a, b: _forward(spec, p, a, b, True)[0]
  epoch = vq.make_epoch_fn(loss_fn, spec.optimizer(), spec.n, spec.batch_size)
  assign_all = jax.jit(lambda p, a, b: _forward(spec, p, a, b, False)[1])
  return epoch, assign_all


def train_gensar(x_sem: np.ndarray, x_col: np.ndarray, *, shared_levels: int = 2,
                 specific_levels: int = 2, codebook_size: int = 256, latent_dim: int = 32,
                 hidden: tuple[int, ...] = (512, 256, 128, 64), beta: float = 0.25,
                 epochs: int = 150, batch_size: int = 1024, learning_rate: float = 1e-3,
                 weight_decay: float = 1e-5, clip_norm: float = 1.0, eval_every: int = 10,
                 sinkhorn_eps: float = 0.003, sinkhorn_iters: int = 50,
                 collision_rounds: int = 20, seed: int = 0) -> GenSARResult:
  """Trains the GenSAR quantizer on paired embeddings (float[N, d_s], float[N, d_c])."""
  xs = jnp.asarray(x_sem, jnp.float32)
  xc = jnp.asarray(x_col, jnp.float32)
  n = xs.shape[0]
  if xc.shape[0] != n:
    raise ValueError(f"semantic ({n}) and collaborative ({xc.shape[0]}) row counts differ")
  spec = _Spec(n, xs.shape[1], xc.shape[1], latent_dim, tuple(hidden), shared_levels,
               specific_levels, float(beta), min(batch_size, n), float(learning_rate),
               float(weight_decay), float(clip_norm), float(sinkhorn_eps), int(sinkhorn_iters))
  enc, dec_s, dec_c = spec.modules()
  d = latent_dim
  keys = jax.random.split(jax.random.PRNGKey(seed), 6)
  params = {"enc_sem": enc.init(keys[0], xs[:1]), "enc_col": enc.init(keys[1], xc[:1]),
            "dec_sem": dec_s.init(keys[2], jnp.zeros((1, latent_dim))),
            "dec_col": dec_c.init(keys[3], jnp.zeros((1, latent_dim)))}

  # k-means init on the first minibatch's latents, level by level.
  first = vq.minibatches(jax.random.fold_in(keys[5], 0), n, batch_size)[0]
  z0 = np.asarray(_latents(spec, params, xs[first], xc[first]))
  sh = rqk.rq_kmeans(z0, shared_levels, codebook_size, seed=seed, iterations=100)
  r0 = z0 - sh.codebooks[np.arange(shared_levels)[None], sh.codes].sum(1)
  se = rqk.rq_kmeans(r0[:, :d], specific_levels, codebook_size, seed=seed + 1, iterations=100)
  co = rqk.rq_kmeans(r0[:, d:], specific_levels, codebook_size, seed=seed + 2, iterations=100)
  params.update(shared=jnp.asarray(sh.codebooks), sem=jnp.asarray(se.codebooks),
                col=jnp.asarray(co.codebooks))

  epoch_fn, assign = _compiled(spec)
  opt_state = spec.optimizer().init(params)

  def rate(p) -> float:
    sh_c, s_c, c_c, _, _ = assign(p, xs, xc)
    return (stats.collision_rate(np.concatenate([sh_c, s_c], 1))
            + stats.collision_rate(np.concatenate([sh_c, c_c], 1)))

  t0 = time.time()
  losses = []
  best, best_rate, best_epoch = params, np.inf, 0
  for epoch in range(epochs):
    params, opt_state, loss = epoch_fn(params, opt_state, jax.random.fold_in(keys[4], epoch),
                                       xs, xc)
    losses.append(float(loss))
    if (epoch + 1) % max(eval_every, 1) == 0 or epoch + 1 == epochs:
      r = rate(params)
      if r < best_rate:
        best, best_rate, best_epoch = params, r, epoch + 1

  sh_c, s_c, c_c, s_last, c_last = (np.asarray(a) for a in assign(best, xs, xc))
  t1 = time.time()
  kw = dict(rounds=collision_rounds, eps=sinkhorn_eps, iters=sinkhorn_iters)
  s_new, s_rounds = resolve_collisions(sh_c, s_c, s_last, np.asarray(best["sem"][-1]), **kw)
  c_new, c_rounds = resolve_collisions(sh_c, c_c, c_last, np.asarray(best["col"][-1]), **kw)
  return GenSARResult(sh_c.astype(np.int32), s_new, c_new, s_c.astype(np.int32),
                      c_c.astype(np.int32), {"semantic": s_rounds, "collaborative": c_rounds},
                      np.asarray(losses), best_epoch, best,
                      {"train": round(t1 - t0, 2), "collisions": round(time.time() - t1, 2)})
