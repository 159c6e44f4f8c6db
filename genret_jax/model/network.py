"""T5 v1.1 / Flan-T5 encoder-decoder in flax.linen (T5X conventions).

Shapes: B batch, S encoder length, T decoder length, E emb_dim, V vocab_size.
Token 0 is padding (masked everywhere) and the decoder's BOS: decoder inputs
are the targets shifted right with 0 in front. Packing follows T5X: segment ids
(1, 2, ... per example, 0 = padding) restrict attention to one segment, and
positions restart at 0 in each segment.

The relative-position bias is computed once per stack from the offsets
0..L-1 of the row, as T5X does: inside a segment (the only pairs the segment
mask lets attend) the offset k - q is the same whether counted from the row
or from the segment start, so packed rows need no per-row [B, H, L, L] bias
(on a CPU the per-row gather was ~10% of a tiny-T5 train step).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from genret_jax.model import attention as attn
from genret_jax.model import layers

Array = jax.Array

VOCAB_MULTIPLE = 128


def pad_vocab_size(vocab_size: int, multiple: int = VOCAB_MULTIPLE) -> int:
  """Rounds a vocabulary size up to a multiple of `multiple` (TPU/GPU friendly)."""
  if vocab_size <= 0:
    raise ValueError(f"vocab_size must be positive, got {vocab_size}")
  return -(-vocab_size // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Hyper-parameters of the network. `vocab_size` is already padded.

  `dtype` is the activation dtype (float32 or bfloat16); parameters are float32.
  `logits_via_embedding` ties the output head to the token embedding, with
  the decoder output scaled by 1/sqrt(emb_dim) as in the original T5.
  `attention_dropout_bits`: random bits per attention-weight dropout draw, 16
  (half the hashing, drop rate within 2^-17) or 32 (as Flax / T5X).
  """
  vocab_size: int
  emb_dim: int = 512
  num_heads: int = 8
  head_dim: int = 64
  mlp_dim: int = 2048
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32
  logits_via_embedding: bool = False
  mlp_activations: Sequence[str] = ("gelu", "linear")
  layer_norm_epsilon: float = 1e-6
  attention_dropout_bits: int = 16


# T5 v1.1 / Flan-T5 dimensions; `tiny` is for tests (4 heads and mlp 64 split
# evenly over a model axis of up to 4 devices).
_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(emb_dim=32, num_heads=4, head_dim=8, mlp_dim=64,
                 num_encoder_layers=2, num_decoder_layers=2),
    "small": dict(emb_dim=512, num_heads=6, head_dim=64, mlp_dim=1024,
                  num_encoder_layers=8, num_decoder_layers=8),
    "base": dict(emb_dim=768, num_heads=12, head_dim=64, mlp_dim=2048,
                 num_encoder_layers=12, num_decoder_layers=12),
    "large": dict(emb_dim=1024, num_heads=16, head_dim=64, mlp_dim=2816,
                  num_encoder_layers=24, num_decoder_layers=24),
}
SIZES = tuple(_SIZES)


# The T5Config fields a size fixes.
DIM_FIELDS = ("emb_dim", "num_heads", "head_dim", "mlp_dim", "num_encoder_layers",
              "num_decoder_layers")


def _size_dims(size: str | None, overrides: dict[str, Any]) -> dict[str, int]:
  """The dimensions of `size`; {} for None, when `overrides` give every one."""
  if size is None:
    missing = [f for f in DIM_FIELDS if f not in overrides]
    if missing:
      raise ValueError(f"t5_config without a size needs every dimension; missing {missing}")
    return {}
  if size not in _SIZES:
    raise ValueError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
  return dict(_SIZES[size])


def t5_config(size: str | None, vocab_size: int, **overrides: Any) -> T5Config:
  """The T5Config of a named size with `vocab_size` padded to a multiple of 128.

  Args:
    size: one of SIZES (tiny, small, base, large), or None when `overrides`
      give every dimension (DIM_FIELDS).
    vocab_size: the real vocabulary size (text pieces + extra tokens).
    **overrides: any T5Config field (e.g. dtype, dropout_rate, emb_dim).
  Raises:
    ValueError: an unknown size or field, or size None with a dimension missing.
  """
  fields = {f.name for f in dataclasses.fields(T5Config)}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f"unknown T5Config fields {unknown}")
  kwargs = _size_dims(size, overrides)
  kwargs.update(overrides)
  return T5Config(vocab_size=pad_vocab_size(vocab_size), **kwargs)


def _row_positions(length: int) -> Array:
  """int32[1, L] 0..L-1: the positions the relative bias is computed from."""
  return jnp.arange(length, dtype=jnp.int32)[None, :]


class EncoderLayer(nn.Module):
  """Pre-norm self-attention + gated MLP, each with a residual and dropout."""
  config: T5Config

  @nn.compact
  def __call__(self, x: Array, mask: Array, bias: Array, deterministic: bool) -> Array:
    cfg = self.config
    dropout = lambda: nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))  # noqa: E731
    y = layers.LayerNorm(cfg.layer_norm_epsilon, cfg.dtype, name="pre_attention_layer_norm")(x)
    y = attn.MultiHeadDotProductAttention(
        cfg.num_heads, cfg.head_dim, cfg.dtype, cfg.dropout_rate,
        dropout_bits=cfg.attention_dropout_bits, name="attention")(
            y, y, mask, bias, deterministic=deterministic)
    x = x + dropout()(y, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    y = layers.LayerNorm(cfg.layer_norm_epsilon, cfg.dtype, name="pre_mlp_layer_norm")(x)
    y = layers.MlpBlock(cfg.mlp_dim, cfg.mlp_activations, cfg.dropout_rate, cfg.dtype,
                        name="mlp")(y, deterministic=deterministic)
    x = x + dropout()(y, deterministic=deterministic)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class DecoderLayer(nn.Module):
  """Pre-norm causal self-attention, cross-attention and gated MLP."""
  config: T5Config
  relative_embedding: nn.Module

  @nn.compact
  def __call__(self, x: Array, encoded: Array, self_mask: Array | None, self_bias: Array | None,
               cross_mask: Array, deterministic: bool, decode: bool,
               building_cache: bool = False) -> Array:
    cfg = self.config
    dropout = lambda: nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))  # noqa: E731
    y = layers.LayerNorm(cfg.layer_norm_epsilon, cfg.dtype,
                         name="pre_self_attention_layer_norm")(x)
    y = attn.MultiHeadDotProductAttention(
        cfg.num_heads, cfg.head_dim, cfg.dtype, cfg.dropout_rate,
        relative_embedding=self.relative_embedding, dropout_bits=cfg.attention_dropout_bits,
        name="self_attention")(
            y, y, self_mask, self_bias, decode=decode, deterministic=deterministic)
    x = x + dropout()(y, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    y = layers.LayerNorm(cfg.layer_norm_epsilon, cfg.dtype,
                         name="pre_cross_attention_layer_norm")(x)
    y = attn.MultiHeadDotProductAttention(
        cfg.num_heads, cfg.head_dim, cfg.dtype, cfg.dropout_rate, cache_projected_kv=True,
        dropout_bits=cfg.attention_dropout_bits, name="encoder_decoder_attention")(
            y, encoded, cross_mask, None, decode=decode, deterministic=deterministic,
            store_projected=building_cache)
    x = x + dropout()(y, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    y = layers.LayerNorm(cfg.layer_norm_epsilon, cfg.dtype, name="pre_mlp_layer_norm")(x)
    y = layers.MlpBlock(cfg.mlp_dim, cfg.mlp_activations, cfg.dropout_rate, cfg.dtype,
                        name="mlp")(y, deterministic=deterministic)
    x = x + dropout()(y, deterministic=deterministic)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class Encoder(nn.Module):
  """Token embeddings -> N EncoderLayers -> final layer norm."""
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, tokens: Array, mask: Array, deterministic: bool) -> Array:
    """tokens int32[B, S], mask [B, 1, S, S] -> dtype[B, S, E]."""
    cfg = self.config
    rel_emb = layers.RelativePositionBiases(
        cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance, cfg.num_heads,
        cfg.dtype, name="relpos_bias")
    pos = _row_positions(tokens.shape[1])
    bias = rel_emb(pos, pos, bidirectional=True)  # [1, H, S, S]
    x = self.shared_embedding(tokens.astype(jnp.int32))
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x.astype(cfg.dtype), ("batch", "length", "embed"))
    for i in range(cfg.num_encoder_layers):
      x = EncoderLayer(cfg, name=f"layers_{i}")(x, mask, bias, deterministic)
    x = layers.LayerNorm(cfg.layer_norm_epsilon, cfg.dtype, name="encoder_norm")(x)
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class Decoder(nn.Module):
  """Token embeddings -> N DecoderLayers -> final norm -> float32 logits."""
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoded: Array, tokens: Array, self_mask: Array | None,
               cross_mask: Array, deterministic: bool,
               decode: bool) -> Array:
    """encoded [B, S, E], tokens int32[B, T] -> float32[B, T, V].

    In a cached decoding step (decode=True, T == 1, cache initialised) the
    self-attention mask and relative bias come from each layer's cache_index.
    """
    cfg = self.config
    rel_emb = layers.RelativePositionBiases(
        cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance, cfg.num_heads,
        cfg.dtype, name="relpos_bias")
    cached_step = decode and self.has_variable("cache", "layers_0")
    if cached_step:
      self_bias = None
    else:
      pos = _row_positions(tokens.shape[1])
      self_bias = rel_emb(pos, pos, bidirectional=False)  # [1, H, T, T]
    y = self.shared_embedding(tokens.astype(jnp.int32))
    y = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    y = nn.with_logical_constraint(y.astype(cfg.dtype), ("batch", "length", "embed"))
    for i in range(cfg.num_decoder_layers):
      y = DecoderLayer(cfg, relative_embedding=rel_emb, name=f"layers_{i}")(
          y, encoded, self_mask, self_bias, cross_mask, deterministic, decode,
          building_cache=decode and not cached_step)
    y = layers.LayerNorm(cfg.layer_norm_epsilon, cfg.dtype, name="decoder_norm")(y)
    y = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    if cfg.logits_via_embedding:
      logits = self.shared_embedding.attend(y) / jnp.sqrt(jnp.asarray(cfg.emb_dim, cfg.dtype))
    else:
      logits = layers.DenseGeneral(cfg.vocab_size, dtype=cfg.dtype,
                                   kernel_axes=("embed", "vocab"), name="logits_dense")(y)
    logits = nn.with_logical_constraint(logits, ("batch", "length", "vocab"))
    return logits.astype(jnp.float32)


class Transformer(nn.Module):
  """The T5 encoder-decoder. See the module docstring for token conventions."""
  config: T5Config

  def setup(self):
    cfg = self.config
    self.shared_embedding = layers.Embed(cfg.vocab_size, cfg.emb_dim, cfg.dtype,
                                         name="token_embedder")
    self.encoder = Encoder(cfg, self.shared_embedding)
    self.decoder = Decoder(cfg, self.shared_embedding)

  def encode(self, encoder_input_tokens: Array, encoder_segment_ids: Array | None = None,
             encoder_positions: Array | None = None, *, enable_dropout: bool = True) -> Array:
    """int32[B, S] -> dtype[B, S, E]. Pad positions (token 0) are masked.

    encoder_positions: accepted for T5X compatibility and unused (see the
    module docstring: the relative bias needs only the segment mask).
    """
    del encoder_positions
    cfg = self.config
    valid = encoder_input_tokens > 0
    mask = attn.make_attention_mask(valid, valid, jnp.logical_and, dtype=cfg.dtype)
    if encoder_segment_ids is not None:
      mask = attn.combine_masks(mask, attn.make_attention_mask(
          encoder_segment_ids, encoder_segment_ids, jnp.equal, dtype=cfg.dtype), dtype=cfg.dtype)
    return self.encoder(encoder_input_tokens, mask, deterministic=not enable_dropout)

  def decode(self, encoded: Array, encoder_input_tokens: Array, decoder_input_tokens: Array,
             decoder_target_tokens: Array, encoder_segment_ids: Array | None = None,
             decoder_segment_ids: Array | None = None, decoder_positions: Array | None = None,
             *, enable_dropout: bool = True, decode: bool = False,
             max_decode_length: int | None = None) -> Array:
    """Decoder logits float32[B, T, V].

    Args:
      encoded: dtype[B, S, E] from `encode`.
      encoder_input_tokens: int32[B, S] (for the cross-attention padding mask).
      decoder_input_tokens: int32[B, T], targets shifted right (0 = BOS).
      decoder_target_tokens: int32[B, T]; 0 marks padding (masked). In cached
        decoding only its shape matters.
      decode: use the KV cache. With an initialised cache T must be 1 and the
        token is placed at the cache's `cache_index`; without one (init) the
        cache variables are created with length T.
      decoder_positions: accepted for T5X compatibility and unused: the relative
        bias is computed from 0..T-1 (module docstring); in a cached step the
        position is the cache's `cache_index`.
      max_decode_length: accepted for T5X compatibility; the cache length
        is fixed by `init_cache`.
    """
    del max_decode_length, decoder_positions  # the cache carries its own length.
    cfg = self.config
    cached_step = decode and self.has_variable("cache", "decoder")
    if cached_step:
      # Every cached position is a real token; each layer's cache masks the future.
      self_mask = None
      # [B_enc, 1, 1, S]: per encoder row, so beams may share projected keys.
      cross_mask = (encoder_input_tokens > 0)[:, None, None, :].astype(cfg.dtype)
    else:
      self_mask = attn.make_decoder_mask(decoder_target_tokens, cfg.dtype, decoder_segment_ids)
      cross_mask = attn.make_attention_mask(decoder_target_tokens > 0, encoder_input_tokens > 0,
                                            jnp.logical_and, dtype=cfg.dtype)
    if encoder_segment_ids is not None and decoder_segment_ids is not None:
      cross_mask = attn.combine_masks(cross_mask, attn.make_attention_mask(
          decoder_segment_ids, encoder_segment_ids, jnp.equal, dtype=cfg.dtype), dtype=cfg.dtype)
    return self.decoder(encoded, decoder_input_tokens, self_mask, cross_mask,
                        deterministic=not enable_dropout, decode=decode)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Array, encoder_segment_ids: Array | None = None,
               decoder_segment_ids: Array | None = None, encoder_positions: Array | None = None,
               decoder_positions: Array | None = None, *, enable_dropout: bool = True,
               decode: bool = False) -> Array:
    """Teacher-forced logits float32[B, T, V] (see `encode` and `decode`)."""
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids, encoder_positions,
                          enable_dropout=enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                       decoder_target_tokens, encoder_segment_ids, decoder_segment_ids,
                       decoder_positions, enable_dropout=enable_dropout, decode=decode)


def init_cache(module: Transformer, batch_size: int, max_decode_length: int,
               encoder_length: int, *, params: Any = None, encoded: Array | None = None,
               encoder_input_tokens: Array | None = None, beams: int = 1) -> Any:
  """A fresh KV cache for `batch_size` sequences of up to `max_decode_length` tokens.

  Returns the 'cache' collection: per decoder layer `self_attention/
  {cached_key, cached_value}` dtype[batch, H, max_decode_length, D] (zeros)
  and `cache_index` int32[] (0).

  Shape-only (no params): nothing is computed (jax.eval_shape); each cached
  step then projects `encoded` for the cross-attention.
  With `params`, `encoded` dtype[batch / beams, S, E] and `encoder_input_tokens`
  int32[batch / beams, S]: the cache also holds each layer's projected
  cross-attention keys/values (`encoder_decoder_attention/{projected_key,
  projected_value}` dtype[batch / beams, H, S, D]), computed once here, so
  steps skip that projection. With beams = K > 1 the decoder rows are K
  contiguous beams per encoder row and share its keys/values (neither
  projected nor stored K times). Steps must then pass the same `encoded` and
  `encoder_input_tokens` rows (batch / beams of them; the cache overrides
  `encoded`).

  Use with `module.apply({'params': p, 'cache': c}, encoded, enc_tokens, tok,
  tok, decode=True, enable_dropout=False, mutable=['cache'],
  method=Transformer.decode)` on one token (int32[batch, 1]) at a time.
  """
  if params is None:
    dec = jnp.ones((batch_size, max_decode_length), jnp.int32)
    enc = jnp.ones((batch_size, encoder_length), jnp.int32)

    def _init():
      return module.init(jax.random.PRNGKey(0), enc, dec, dec, enable_dropout=False,
                         decode=True)

    shapes = jax.eval_shape(_init)["cache"]
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  if encoded is None or encoder_input_tokens is None:
    raise ValueError("init_cache with params also needs encoded and encoder_input_tokens")
  if beams < 1 or batch_size % beams:
    raise ValueError(f"batch_size {batch_size} is not a multiple of beams {beams}")
  rows = batch_size // beams
  if encoded.shape[:2] != (rows, encoder_length):
    raise ValueError(f"encoded has shape {encoded.shape}, expected "
                     f"({rows}, {encoder_length}, emb)")
  # An apply without a cache creates zero self-attention caches and stores the
  # projected encoder keys/values (its logits are discarded).
  dec = jnp.ones((rows, max_decode_length), jnp.int32)
  _, mutated = module.apply({"params": params}, encoded, encoder_input_tokens, dec, dec,
                            enable_dropout=False, decode=True, mutable=["cache"],
                            method=Transformer.decode)

  def per_beam(path, x):  # self-attention caches: zeros for every beam
    if x.ndim and any(getattr(k, "key", None) == "self_attention" for k in path):
      return jnp.zeros((batch_size,) + x.shape[1:], x.dtype)
    return x

  return jax.tree_util.tree_map_with_path(per_beam, mutated["cache"])
