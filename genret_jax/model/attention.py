"""T5 multi-head attention with an autoregressive KV cache, and attention masks.

Conventions (T5X): masks are float/bool arrays broadcastable to [B, H, Q, K]
with 1 = may attend; biases are additive float arrays of the same shape.
No 1/sqrt(head_dim) scaling of the logits (T5 folds it into the query init).

KV cache ('cache' collection, per attention module), heads-major like T5X's
so that a step's products are batched matmuls without transposing the cache:
  cached_key, cached_value: dtype[B, H, max_length, D]
  cache_index: int32[] (the position the next token is written to)
The cache is created when the module is called with `decode=True` on the full
decoder length (see `network.init_cache`) and then advanced one token per call
with inputs of length 1.

Cross-attention may also keep the projected encoder keys/values
(`projected_key`, `projected_value` dtype[B, H, S, D]) in the cache, so cached
steps do not re-project the encoder output every token. They are stored when
the cache is built by `module.apply` (not `module.init`) with real encoder
states; whether they exist is static (pytree structure). Beam search keeps
them once per query: with queries of batch B*K against projected keys of
batch B, the K contiguous rows of a query share its keys/values (the K query
rows become K query positions of one batched matmul), so neither the
projection nor the keys/values are repeated per beam.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

from genret_jax.model import layers

Array = jax.Array


def make_attention_mask(query_input: Array, key_input: Array,
                        pairwise_fn: Callable[[Array, Array], Array] = jnp.multiply,
                        dtype: jnp.dtype = jnp.float32) -> Array:
  """[B, Q], [B, K]  ->  dtype[B, 1, Q, K] = pairwise_fn(query, key)."""
  mask = pairwise_fn(query_input[:, :, None], key_input[:, None, :])
  return mask[:, None].astype(dtype)


def make_causal_mask(x: Array, dtype: jnp.dtype = jnp.float32) -> Array:
  """[B, L]  ->  dtype[B, 1, L, L], 1 where key position <= query position."""
  idxs = jnp.broadcast_to(jnp.arange(x.shape[-1], dtype=jnp.int32), x.shape)
  return make_attention_mask(idxs, idxs, jnp.greater_equal, dtype=dtype)


def combine_masks(*masks: Array | None, dtype: jnp.dtype = jnp.float32) -> Array | None:
  """Logical AND of the non-None masks (None when all are None)."""
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  mask = masks[0].astype(bool)
  for m in masks[1:]:
    mask = jnp.logical_and(mask, m.astype(bool))
  return mask.astype(dtype)


def combine_biases(*biases: Array | None) -> Array | None:
  """Sum of the non-None biases (None when all are None)."""
  biases = [b for b in biases if b is not None]
  if not biases:
    return None
  out = biases[0]
  for b in biases[1:]:
    out = out + b
  return out


def make_decoder_mask(decoder_target_tokens: Array, dtype: jnp.dtype = jnp.float32,
                      decoder_segment_ids: Array | None = None) -> Array:
  """Causal self-attention mask of the decoder: [B, T] -> dtype[B, 1, T, T].

  Padding (target token 0) positions attend to nothing and are attended by
  nothing; with packing, positions attend only within their own segment.
  """
  valid = decoder_target_tokens > 0
  masks = [make_causal_mask(decoder_target_tokens, dtype=dtype),
           make_attention_mask(valid, valid, jnp.logical_and, dtype=dtype)]
  if decoder_segment_ids is not None:
    masks.append(make_attention_mask(decoder_segment_ids, decoder_segment_ids, jnp.equal,
                                     dtype=dtype))
  return combine_masks(*masks, dtype=dtype)


def dropout_keep_mask(rng: Array, rate: float, shape: tuple[int, ...]) -> Array:
  """bool[shape]: each element kept with probability 1 - rate, from 16 random bits.

  One threefry hash yields 32 random bits; `jax.random.bernoulli` spends them
  on one element, this splits them into two 16-bit draws (the low and high
  halves, laid side by side on the last axis). On a CPU the hashing is most of
  the cost of dropout on attention weights (B x H x Q x K elements), so this
  halves it. The drop probability is round(rate * 2^16) / 2^16, within 2^-17
  of `rate` (0.1 -> 0.100006).
  """
  *lead, last = shape
  bits = jax.random.bits(rng, (*lead, (last + 1) // 2), jnp.uint32)
  halves = jnp.concatenate([bits & 0xFFFF, bits >> 16], axis=-1)[..., :last]
  return halves >= jnp.uint32(round(rate * 65536))


def dot_product_attention(query: Array, key: Array, value: Array, bias: Array | None,
                          dropout_rng: Array | None, dropout_rate: float, deterministic: bool,
                          dtype: jnp.dtype, dropout_bits: int = 16) -> Array:
  """softmax(q k^T + bias) v with the softmax in float32.

  Heads-major layout, so both products are plain batched matmuls over (B, H):
  query [B, H, Q, D], key/value [B, H, K, D], bias broadcastable to
  [B, H, Q, K] -> dtype[B, H, Q, D]. Dropout on the attention weights draws
  `dropout_bits` random bits per weight: 16 (dropout_keep_mask) or 32
  (jax.random.bernoulli, as Flax and T5X).
  """
  logits = layers.einsum("bhqd,bhkd->bhqk", query, key).astype(jnp.float32)
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  weights = jax.nn.softmax(logits, axis=-1).astype(dtype)
  if not deterministic and dropout_rate > 0.0:
    if dropout_bits == 32:
      keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    else:
      keep = dropout_keep_mask(dropout_rng, dropout_rate, weights.shape)
    weights = weights * keep.astype(dtype) / jnp.asarray(1.0 - dropout_rate, dtype)
  return layers.einsum("bhqk,bhkd->bhqd", weights, value.astype(dtype))


def mask_to_bias(mask: Array | None, dtype: jnp.dtype = jnp.float32) -> Array | None:
  """1/0 mask -> 0/-1e10 additive bias (None stays None)."""
  if mask is None:
    return None
  return jnp.where(mask > 0, jnp.zeros((), dtype), jnp.full((), -1e10, dtype))


class MultiHeadDotProductAttention(nn.Module):
  """T5 attention: projections q/k/v [embed, heads, kv], out [heads, kv, embed].

  Attributes:
    num_heads, head_dim: attention shape.
    relative_embedding: the decoder's shared RelativePositionBiases; only used
      in cached decoding, where the bias of the current step is computed from
      `cache_index` (query position) against all cache positions.
  """
  num_heads: int
  head_dim: int
  dtype: jnp.dtype = jnp.float32
  dropout_rate: float = 0.0
  kernel_init: layers.Initializer = layers.default_kernel_init
  relative_embedding: nn.Module | None = None
  cache_projected_kv: bool = False
  dropout_bits: int = 16

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array, mask: Array | None = None,
               bias: Array | None = None, *, decode: bool = False,
               deterministic: bool = True, store_projected: bool = False) -> Array:
    """inputs_q dtype[B, Q, E], inputs_kv dtype[B, K, E] -> dtype[B, Q, E].

    mask: [B|1, 1, Q, K] (1 = attend); bias: [B|1, H, Q, K] additive.
    With decode=True and an initialised cache, Q must be 1: the new key/value
    are written at `cache_index`, the query attends to positions <= it.
    store_projected: (cross-attention, while the cache is being built) keep
    the projected keys/values in the cache for later steps.
    """
    embed = inputs_q.shape[-1]
    # T5X: the 1/sqrt(head_dim) logit scale lives in the query initialiser.
    depth_scaling = self.head_dim ** -0.5

    def query_init(*args):
      return self.kernel_init(*args) * depth_scaling

    def project(name, init, x):  # dtype[B, L, E] -> heads-major dtype[B, H, L, D]
      y = layers.DenseGeneral((self.num_heads, self.head_dim), dtype=self.dtype,
                              kernel_init=init, kernel_axes=("embed", "heads", "kv"),
                              name=name)(x)
      return nn.with_logical_constraint(jnp.swapaxes(y, 1, 2),
                                        ("batch", "heads", "length", "kv"))

    query = project("query", query_init, inputs_q)
    use_projected = (decode and self.cache_projected_kv
                     and self.has_variable("cache", "projected_key"))
    if use_projected:  # cached decoding step: the encoder K/V were projected once
      key = self.get_variable("cache", "projected_key")
      value = self.get_variable("cache", "projected_value")
      if key.shape[0] != query.shape[0]:
        return self._out(_shared_kv_attention(query, key, value, mask, bias, self.dtype), embed)
    else:
      key = project("key", self.kernel_init, inputs_kv)
      value = project("value", self.kernel_init, inputs_kv)
      if (decode and self.cache_projected_kv and store_projected and not self.is_initializing()
          and self.is_mutable_collection("cache")):
        self.put_variable("cache", "projected_key", key)
        self.put_variable("cache", "projected_value", value)

    if decode and not self.cache_projected_kv:
      is_initialized = self.has_variable("cache", "cached_key")
      cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
      cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
      if is_initialized:
        batch, heads, length, depth = cached_key.value.shape
        if query.shape != (batch, heads, 1, depth):
          raise ValueError(f"cached decoding takes one token per call: query {query.shape}, "
                           f"cache {cached_key.value.shape} (both [B, H, L, D])")
        cur = cache_index.value
        key = jax.lax.dynamic_update_slice(cached_key.value, key.astype(cached_key.value.dtype),
                                           (0, 0, cur, 0))
        value = jax.lax.dynamic_update_slice(cached_value.value,
                                             value.astype(cached_value.value.dtype),
                                             (0, 0, cur, 0))
        cached_key.value = key
        cached_value.value = value
        cache_index.value = cur + 1
        # The single query may see cache positions 0..cur.
        step_mask = (jnp.arange(length) <= cur)[None, None, None, :]
        mask = combine_masks(mask, step_mask)
        if self.relative_embedding is not None:
          bias = combine_biases(bias, self.relative_embedding(
              jnp.reshape(cur, (1, 1)), jnp.arange(length, dtype=jnp.int32)[None, :],
              bidirectional=False))

    bias = combine_biases(mask_to_bias(mask, self.dtype), bias)
    dropout_rng = None
    if not deterministic and self.dropout_rate > 0.0:
      dropout_rng = self.make_rng("dropout")
    x = dot_product_attention(query, key, value, bias, dropout_rng, self.dropout_rate,
                              deterministic, self.dtype, self.dropout_bits)
    return self._out(x, embed)

  def _out(self, x: Array, embed: int) -> Array:
    """Heads-major dtype[B, H, Q, D] -> output projection dtype[B, Q, E]."""
    x = jnp.swapaxes(x, 1, 2)  # [B, Q, H, D]
    return layers.DenseGeneral(embed, axis=(-2, -1), dtype=self.dtype,
                               kernel_init=self.kernel_init, kernel_axes=("heads", "kv", "embed"),
                               name="out")(x)


def _shared_kv_attention(query: Array, key: Array, value: Array, mask: Array | None,
                         bias: Array | None, dtype: jnp.dtype) -> Array:
  """Attention of R contiguous query rows per key row (beams sharing an encoder output).

  query [B*R, H, Q, D]; key/value [B, H, S, D]; mask/bias broadcastable to
  [B, H, 1, S] (per key row: the same for all R rows) -> dtype[B*R, H, Q, D].
  The R rows are folded into the query length, so the products stay batched
  matmuls over (B, H) and the keys/values are read once per key row.
  """
  b, h, s, d = key.shape
  r, q = query.shape[0] // b, query.shape[2]
  if query.shape[0] != b * r:
    raise ValueError(f"query batch {query.shape[0]} is not a multiple of key batch {b}")
  for name, m in (("mask", mask), ("bias", bias)):
    if m is not None and (m.shape[0] not in (1, b) or m.shape[2] != 1):
      raise ValueError(f"{name} {m.shape} must be per key row ([{b}|1, H|1, 1, {s}])")
  folded = query.reshape(b, r, h, q, d).transpose(0, 2, 1, 3, 4).reshape(b, h, r * q, d)
  x = dot_product_attention(folded, key, value, combine_biases(mask_to_bias(mask, dtype), bias),
                            None, 0.0, True, dtype)
  return x.reshape(b, h, r, q, d).transpose(0, 2, 1, 3, 4).reshape(b * r, h, q, d)
