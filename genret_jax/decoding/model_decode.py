"""Beam search with our T5 (`genret_jax.model.network.Transformer`).

The encoder runs once per query and each decoder layer projects its output
to cross-attention keys/values once, [B, H, S, D], shared by the query's K
beams (contiguous, matching `beam_search`); nothing is repeated K times. The
decoder runs one token per step with a self-attention KV cache of batch B*K,
which `beam_search` gathers by beam index each step; the per-query cross
keys/values (leading dim B) and the scalar `cache_index` leaves are left
untouched by the gather.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from genret_jax.decoding import beam as bs
from genret_jax.model import network


def _cache_and_logits_fn(module: network.Transformer, params: Any,
                         encoder_input_tokens: jax.Array, beam_size: int, steps: int
                         ) -> tuple[Any, bs.TokensToLogits]:
  """Encodes the queries once; returns the B*K-row decoder cache and the
  T5X-style `tokens_to_logits` of one decoder step."""
  b, s = encoder_input_tokens.shape
  encoded = module.apply({"params": params}, encoder_input_tokens, enable_dropout=False,
                         method=network.Transformer.encode)
  # The cross-attention keys/values are projected once per query and shared
  # by its K beams (see network.init_cache); beam gathers leave them alone.
  cache = network.init_cache(module, b * beam_size, steps, s, params=params, encoded=encoded,
                             encoder_input_tokens=encoder_input_tokens, beams=beam_size)

  def tokens_to_logits(state: bs.DecodingState):
    tok = state.cur_token[:, None]
    logits, variables = module.apply(
        {"params": params, "cache": state.cache}, encoded, encoder_input_tokens, tok,
        jnp.ones_like(tok), enable_dropout=False, decode=True, mutable=["cache"],
        method=network.Transformer.decode)
    return logits[:, 0], variables["cache"]

  return cache, tokens_to_logits


def search(module: network.Transformer, params: Any, encoder_input_tokens: jax.Array,
           constraint: Any = None, *, beam_size: int, num_results: int,
           mode: str = "constrained", num_groups: int = 1, diversity_penalty: float = 0.0,
           num_steps: int | None = None,
           decode_fn: bs.DecodeFn = bs.beam_search) -> bs.BeamSearchOutput:
  """Generates item identifiers for a batch of queries (pure; jit it).

  Args:
    module: the Transformer.
    params: its 'params' collection.
    encoder_input_tokens: int32[B, S] encoded queries (0 = padding).
    constraint: `trie.Trie` or `candidates.CandidateSet` (batch B), or None:
      every token allowed for `num_steps` steps, no items (see beam_search).
    beam_size: K. num_results: items returned per query.
    mode: 'constrained' | 'unconstrained' | 'diverse'.
    num_groups, diversity_penalty: diverse mode only.
    num_steps: tokens to generate; only (and then required) without a constraint.
    decode_fn: the search (T5X's `decode_fn`), called as `beam_search` is;
      default `beam.beam_search`.
  Returns:
    `beam.BeamSearchOutput`.
  """
  b = encoder_input_tokens.shape[0]
  steps = bs.decode_length(constraint, num_steps)
  cache, tokens_to_logits = _cache_and_logits_fn(module, params, encoder_input_tokens,
                                                 beam_size, steps)
  diverse = mode == "diverse"
  return decode_fn(tokens_to_logits, cache, constraint, batch_size=b, beam_size=beam_size,
                   num_results=num_results, constrained=mode != "unconstrained",
                   num_groups=num_groups if diverse else 1,
                   diversity_penalty=diversity_penalty if diverse else 0.0,
                   num_steps=num_steps)


search_jit = jax.jit(search, static_argnums=(0,), static_argnames=(
    "beam_size", "num_results", "mode", "num_groups", "diversity_penalty", "num_steps",
    "decode_fn"))
search_jit.__doc__ = """`search` under jax.jit (module, settings and decode_fn static;
Transformers with equal configs share compiled programs). Shard the batch on the 'data'
mesh axis by passing sharded inputs, and call it inside `partitioning.axis_rules(mesh)`."""


def search_kwargs(decode_config: ml_collections.ConfigDict, num_results: int) -> dict:
  """`search` keyword arguments from the `decode` config block."""
  return dict(beam_size=int(decode_config.beam_size), num_results=int(num_results),
              mode=str(decode_config.mode), num_groups=int(decode_config.num_groups),
              diversity_penalty=float(decode_config.diversity_penalty))


def sequence_logprobs(module: network.Transformer, params: Any,
                      encoder_input_tokens: jax.Array, target_tokens: jax.Array) -> jax.Array:
  """Teacher-forced log-probability of whole target sequences (brute-force scorer).

  Args:
    encoder_input_tokens: int32[B, S].
    target_tokens: int32[B, T] (forced prefix + ID tokens, no padding).
  Returns:
    float32[B] sum over t of log p(target_t | target_<t, input).
  """
  inputs = jnp.pad(target_tokens[:, :-1], ((0, 0), (1, 0)))
  logits = module.apply({"params": params}, encoder_input_tokens, inputs,
                        jnp.ones_like(target_tokens), enable_dropout=False)
  lp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(lp, target_tokens[..., None], axis=-1)[..., 0].sum(-1)
