"""RQ-VAE (TIGER): MLP encoder -> L residual codebooks -> MLP decoder.

Loss = MSE(x, decoder(quantized)) + sum over levels of
(||sg[r_l] - e_l||^2 + beta ||r_l - sg[e_l]||^2), straight-through gradients
to the encoder. Codebooks start from residual k-means on the initial
encoder's latents; every `reseed_every` epochs unused codes are moved onto
residuals of random items (and counted in the report).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genret_jax.ids import rq_kmeans as rqk
from genret_jax.ids import vq


@dataclasses.dataclass(frozen=True)
class RQVAEResult:
  """codes int32[N, L]; recon_error float (MSE per element of x);
  recon_by_level float[L] (MSE using only the first l+1 levels);
  reseeded int (dead codes re-seeded over training); losses float[epochs]."""
  codes: np.ndarray
  recon_error: float
  recon_by_level: np.ndarray
  reseeded: int
  losses: np.ndarray
  params: Any


@dataclasses.dataclass(frozen=True)
class _Spec:
  """Everything the jitted functions close over (hashable: compiled once per spec)."""
  n: int
  in_dim: int
  hidden: tuple[int, ...]
  latent_dim: int
  levels: int
  beta: float
  batch_size: int
  learning_rate: float
  weight_decay: float

  def modules(self):
    return (vq.MLP(self.hidden + (self.latent_dim,)),
            vq.MLP(tuple(reversed(self.hidden)) + (self.in_dim,)))

  def optimizer(self) -> optax.GradientTransformation:
    return optax.adamw(self.learning_rate, weight_decay=self.weight_decay)


@functools.lru_cache(maxsize=8)
def _compiled(spec: _Spec):
  """(jitted epoch fn, jitted fn: params, x -> codes int32[N, L] and residuals [L, N, D])."""
  encoder, decoder = spec.modules()

  def loss_fn(p, _key, xb):
    z = encoder.apply(p["encoder"], xb)
    _, zq, losses, _ = vq.residual_quantize(z, p["codebooks"], spec.beta)
    recon = decoder.apply(p["decoder"], vq.straight_through(z, zq))
    return jnp.mean((recon - xb) ** 2) + jnp.sum(losses)

  @jax.jit
  def codes_and_residuals(p, x):
    res, codes, ins = encoder.apply(p["encoder"], x), [], []
    for level in range(spec.levels):
      ins.append(res)
      c, e = vq.quantize(res, p["codebooks"][level])
      codes.append(c)
      res = res - e
    return jnp.stack(codes, 1), jnp.stack(ins)

  return vq.make_epoch_fn(loss_fn, spec.optimizer(), spec.n, spec.batch_size), codes_and_residuals


def train_rq_vae(x: np.ndarray, *, levels: int = 3, codebook_size: int = 256,
                 latent_dim: int = 32, hidden: tuple[int, ...] = (512, 256, 128),
                 beta: float = 0.25, epochs: int = 200, batch_size: int = 1024,
                 learning_rate: float = 1e-3, weight_decay: float = 1e-5,
                 reseed_every: int = 20, seed: int = 0) -> RQVAEResult:
  """Trains an RQ-VAE on x (float[N, d]) and returns every item's codes."""
  x = jnp.asarray(x, jnp.float32)
  n, d = x.shape
  spec = _Spec(n, d, tuple(hidden), latent_dim, levels, float(beta), min(batch_size, n),
               float(learning_rate), float(weight_decay))
  encoder, decoder = spec.modules()
  key = jax.random.PRNGKey(seed)
  k_enc, k_dec, k_train = jax.random.split(key, 3)
  params = {"encoder": encoder.init(k_enc, x[:1]),
            "decoder": decoder.init(k_dec, jnp.zeros((1, latent_dim)))}
  z0 = encoder.apply(params["encoder"], x)
  init = rqk.rq_kmeans(np.asarray(z0), levels, codebook_size, seed=seed, iterations=30)
  params["codebooks"] = jnp.asarray(init.codebooks)
  epoch_fn, all_codes_and_residuals = _compiled(spec)
  opt_state = spec.optimizer().init(params)

  losses, reseeded = [], 0
  for epoch in range(epochs):
    params, opt_state, loss = epoch_fn(params, opt_state, jax.random.fold_in(k_train, epoch), x)
    losses.append(float(loss))
    if reseed_every and (epoch + 1) % reseed_every == 0 and epoch + 1 < epochs:
      codes, ins = all_codes_and_residuals(params, x)
      books = []
      for level in range(levels):
        book, count = vq.reseed_dead_codes(jax.random.fold_in(k_train, 10**6 + epoch * 31 + level),
                                           params["codebooks"][level], codes[:, level], ins[level])
        books.append(book)
        reseeded += int(count)
      params = dict(params, codebooks=jnp.stack(books))

  codes, recon_by_level = recon_levels(params, x, encoder, decoder)
  return RQVAEResult(np.asarray(codes, np.int32), float(recon_by_level[-1]), recon_by_level,
                     reseeded, np.asarray(losses), params)


def recon_levels(params, x: jax.Array, encoder, decoder) -> tuple[jax.Array, np.ndarray]:
  """Codes of x and the reconstruction MSE decoding from the first l+1 levels."""
  z = encoder.apply(params["encoder"], x)
  codes, _, _, _ = vq.residual_quantize(z, params["codebooks"], 0.0)
  partial = jnp.cumsum(params["codebooks"][jnp.arange(codes.shape[1])[None, :], codes], axis=1)
  errs = [float(jnp.mean((decoder.apply(params["decoder"], partial[:, l]) - x) ** 2))
          for l in range(codes.shape[1])]
  return codes, np.asarray(errs)
