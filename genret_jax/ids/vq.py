"""Pieces shared by the learned quantizers (RQ-VAE, GenSAR): MLPs, residual
vector quantization with a straight-through estimator, minibatch epochs, and
dead-code re-seeding. All pure functions over explicit params.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from genret_jax.ids import kmeans as km


class MLP(nn.Module):
  """Dense layers with ReLU between them, none after the last."""
  features: Sequence[int]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, f in enumerate(self.features):
      x = nn.Dense(f, name=f"dense_{i}")(x)
      if i < len(self.features) - 1:
        x = nn.relu(x)
    return x


def quantize(r: jax.Array, codebook: jax.Array, *, sinkhorn: bool = False,
             eps: float = 0.003, iters: int = 50) -> tuple[jax.Array, jax.Array]:
  """Nearest (or Sinkhorn-balanced) code of each row.

  Args:
    r: float32[B, D] residuals; codebook: float32[K, D].
  Returns:
    (int32[B] codes, float32[B, D] code vectors).
  """
  if sinkhorn:
    codes = km.sinkhorn_assign(jax.lax.stop_gradient(r), jax.lax.stop_gradient(codebook),
                               eps=eps, iters=iters, chunk=r.shape[0])
  else:
    codes = jnp.argmin(km.sq_distances(jax.lax.stop_gradient(r), codebook), axis=1)
  codes = codes.astype(jnp.int32)
  return codes, codebook[codes]


def vq_loss(r: jax.Array, e: jax.Array, beta: float) -> jax.Array:
  """Codebook + commitment loss: mean(||sg[r] - e||^2) + beta mean(||r - sg[e]||^2)."""
  sg = jax.lax.stop_gradient
  return jnp.mean((sg(r) - e) ** 2) + beta * jnp.mean((r - sg(e)) ** 2)


def residual_quantize(z: jax.Array, codebooks: jax.Array, beta: float,
                      sinkhorn_levels: Sequence[bool] = (), eps: float = 0.003,
                      iters: int = 50):
  """Residual VQ of z through L codebooks with a straight-through estimator.

  Args:
    z: float32[B, D]; codebooks: float32[L, K, D].
  Returns:
    (int32[B, L] codes, float32[B, D] quantized z (sum of the code vectors,
     gradient stopped: use `straight_through` to feed a decoder),
     float32[L] per-level VQ losses, float32[B, D] residual entering the last level).
  """
  residual = z
  quant = jnp.zeros_like(z)
  codes, losses = [], []
  last_in = z
  for level in range(codebooks.shape[0]):
    use_sk = bool(sinkhorn_levels[level]) if level < len(sinkhorn_levels) else False
    last_in = residual
    c, e = quantize(residual, codebooks[level], sinkhorn=use_sk, eps=eps, iters=iters)
    losses.append(vq_loss(residual, e, beta))
    quant = quant + e
    residual = residual - jax.lax.stop_gradient(e)
    codes.append(c)
  return jnp.stack(codes, axis=1), jax.lax.stop_gradient(quant), jnp.stack(losses), last_in


def straight_through(z: jax.Array, quant: jax.Array) -> jax.Array:
  """Value `quant`, gradient identity to z (the straight-through estimator)."""
  return z + jax.lax.stop_gradient(quant - z)


def minibatches(key: jax.Array, n: int, batch_size: int) -> jax.Array:
  """int32[steps, B]: one shuffled epoch; the last batch wraps around to stay full."""
  batch_size = min(batch_size, n)
  steps = -(-n // batch_size)
  perm = jax.random.permutation(key, n)
  perm = jnp.concatenate([perm, perm[:steps * batch_size - n]])
  return perm.reshape(steps, batch_size)


def make_epoch_fn(loss_fn: Callable, tx: optax.GradientTransformation, n: int,
                  batch_size: int) -> Callable:
  """Jitted epoch: (params, opt_state, key, *data) -> (params, opt_state, mean loss).

  `loss_fn(params, key, *batch) -> scalar` sees rows gathered from each data
  array (all with leading dimension n).
  """
  grad_fn = jax.value_and_grad(loss_fn)

  @jax.jit
  def epoch(params, opt_state, key, *data):
    batches = minibatches(key, n, batch_size)

    def step(carry, idx):
      params, opt_state = carry
      loss, grads = grad_fn(params, jax.random.fold_in(key, idx[0]), *(d[idx] for d in data))
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batches)
    return params, opt_state, jnp.mean(losses)

  return epoch


@jax.jit
def reseed_dead_codes(key: jax.Array, codebook: jax.Array, codes: jax.Array,
                      residuals: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Moves unused codes onto residuals of random items.

  Args:
    codebook: float32[K, D]; codes: int32[N] current codes at this level;
    residuals: float32[N, D] residuals entering this level.
  Returns:
    (new codebook, int32[] number of codes re-seeded).
  """
  k = codebook.shape[0]
  used = jnp.zeros((k,), jnp.int32).at[codes].add(1) > 0
  pick = jax.random.randint(key, (k,), 0, residuals.shape[0])
  return jnp.where(used[:, None], codebook, residuals[pick]), jnp.sum(~used)
