"""Beam search over item identifiers: one pure, jittable function.

`beam_search` runs a fixed number of steps (forced prefix + ID length); each
step calls an injected T5X-style `tokens_to_logits(DecodingState) -> (logits
[B*K, V], new_cache)`, accumulates log-probabilities, takes top-k over
beams x allowed continuations, and gathers the beams' tokens, trie nodes and
cache. The constraint (a `trie.Trie` or a `candidates.CandidateSet`) is a
pytree argument. Its levels have different shapes (dense / CSR widths), so
the P + L steps are unrolled at trace time; L is small (1-8).

Modes:
* constrained (default): only continuations present in the trie.
* unconstrained: top-k over the whole vocabulary (the forced prefix is still
  forced); the generated sequences are looked up in the trie afterwards and
  those that are not identifiers get leaf -1.
* diverse (num_groups > 1): Hamming-diverse group beam search (Vijayakumar et
  al. 2018, as in Hugging Face `num_beam_groups`): the K beams form G groups
  of K / G, groups choose in turn and a token chosen by earlier groups at this
  step costs `diversity_penalty` per choice. The penalty only steers the
  search; results are ranked by the model's log-probability and deduplicated
  by identifier.

Duplicate-ID rule: a beam ends on a leaf (one identifier); every item sharing
that identifier is returned, consecutively in ascending item index, with the
identifier's score and the beam's rank in `ranks` (the tie group the metrics
average over; see genret_jax.evaluation.metrics).

Sharding: every per-query array keeps the query axis first ([B, ...] or
[B*K, ...] with the K beams of a query contiguous), and beam gathers are
batched `take_along_axis` over that axis, so sharding the batch on the
'data' mesh axis needs no communication.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp

from genret_jax.decoding import trie as trie_lib

NEG_INF = trie_lib.NEG_INF


@dataclasses.dataclass
class DecodingState:
  """What `tokens_to_logits` sees at each step (T5X convention).

  Attributes:
    cur_index: the step number (Python int; steps are unrolled).
    cur_token: int32[B*K]; decoder input of this step (0 at step 0).
    sequences: int32[B*K, T]; tokens generated so far (zeros after cur_index).
    cache: the decoder cache, every batched leaf with leading dim B*K.
  """
  cur_index: int
  cur_token: jax.Array
  sequences: jax.Array
  cache: Any


TokensToLogits = Callable[[DecodingState], tuple[jax.Array, Any]]


@flax.struct.dataclass
class BeamSearchOutput:
  """Result of `beam_search` for B queries, K beams, R results.

  Attributes:
    items: int32[B, R] ranked item indices, -1 padded.
    scores: float32[B, R] sequence log-probability of each item's ID, -inf pad.
    ranks: int32[B, R] rank of the beam (identifier) an item came from; items
      with equal rank share an identifier. -1 pad.
    sequences: int32[B, K, P + L] the beams' tokens, best first.
    beam_scores: float32[B, K] the beams' log-probabilities (-inf = dead).
    beam_leaves: int32[B, K] the beams' leaves (-1 = not an identifier).
  """
  items: jax.Array
  scores: jax.Array
  ranks: jax.Array
  sequences: jax.Array
  beam_scores: jax.Array
  beam_leaves: jax.Array


def gather_beams(x: jax.Array, origin: jax.Array, batch: int, beams: int) -> jax.Array:
  """Reorders the beams of a [B*K, ...] (or [B, K, ...]) array by origin [B, K].

  Leaves whose leading dim is not B*K (e.g. a scalar cache index) are returned
  unchanged, as in T5X's cache_gather_beams.
  """
  if x.ndim == 0 or x.shape[0] != batch * beams:
    return x
  y = x.reshape((batch, beams) + x.shape[1:])
  idx = origin.reshape((batch, beams) + (1,) * (y.ndim - 2))
  return jnp.take_along_axis(y, idx, axis=1).reshape(x.shape)


def _select_topk(total: jax.Array, beams: int):
  """Top-k over beams x width. total [B, Kin, W] -> scores, origin, flat idx [B, K]."""
  b, k, w = total.shape
  scores, idx = jax.lax.top_k(total.reshape(b, k * w), beams)
  return scores, idx // w, idx


def _select_diverse(total: jax.Array, tokens: jax.Array, num_groups: int,
                    penalty: float, vocab_size: int, beams: int):
  """Group beam search selection with a Hamming diversity penalty.

  Args:
    total: float32[B, Kin, W] beam score + candidate log-prob (-inf invalid);
      the Kin input beams form num_groups contiguous groups.
    tokens: int32[B, Kin, W] candidate tokens.
    beams: K output beams (K / num_groups per group).
  Returns:
    scores [B, K] (penalised), origin [B, K] into Kin, flat index into Kin*W.
  """
  b, k_in, w = total.shape
  gi, go = k_in // num_groups, beams // num_groups
  tot = total.reshape(b, num_groups, gi, w).transpose(1, 0, 2, 3)
  tok = tokens.reshape(b, num_groups, gi, w).transpose(1, 0, 2, 3)

  def group(counts, xs):
    g, tot_g, tok_g = xs
    pen = jnp.take_along_axis(counts, tok_g.reshape(b, gi * w), axis=1)
    s, idx = jax.lax.top_k(tot_g.reshape(b, gi * w) - penalty * pen, go)
    chosen = jnp.take_along_axis(tok_g.reshape(b, gi * w), idx, axis=1)
    alive = s > NEG_INF
    counts = jax.vmap(lambda c, t, a: c.at[t].add(a))(counts, chosen,
                                                      alive.astype(counts.dtype))
    origin = g * gi + idx // w
    return counts, (s, origin, origin * w + idx % w)

  counts = jnp.zeros((b, vocab_size), jnp.float32)
  _, (s, origin, flat) = jax.lax.scan(
      group, counts, (jnp.arange(num_groups), tot, tok))
  fix = lambda a: a.transpose(1, 0, 2).reshape(b, beams)
  return fix(s), fix(origin), fix(flat)


def _pad_width(x: jax.Array, width: int, fill) -> jax.Array:
  """Pads the last axis of x up to `width` with `fill`."""
  if x.shape[-1] >= width:
    return x
  pad = [(0, 0)] * (x.ndim - 1) + [(0, width - x.shape[-1])]
  return jnp.pad(x, pad, constant_values=fill)


def _expand_items(constraint, leaves, scores, num_results: int):
  """Beams (best first) -> ranked items with the duplicate-ID rule."""
  b, k = leaves.shape
  items, valid = constraint.items(leaves)                   # [B, K, D]
  valid &= (scores > NEG_INF)[..., None]
  d = items.shape[-1]
  pos = jnp.arange(k * d, dtype=jnp.int32).reshape(k, d)
  key = jnp.where(valid, pos, k * d + pos).reshape(b, k * d)
  r = min(num_results, k * d)
  _, idx = jax.lax.top_k(-key, r)
  take = lambda a: jnp.take_along_axis(a.reshape(b, k * d), idx, axis=1)
  ok = take(valid)
  out_items = jnp.where(ok, take(items), -1)
  out_scores = jnp.where(ok, take(jnp.broadcast_to(scores[..., None], items.shape)),
                         NEG_INF)
  out_ranks = jnp.where(ok, idx // d, -1).astype(jnp.int32)
  if r < num_results:
    pad = ((0, 0), (0, num_results - r))
    out_items = jnp.pad(out_items, pad, constant_values=-1)
    out_scores = jnp.pad(out_scores, pad, constant_values=NEG_INF)
    out_ranks = jnp.pad(out_ranks, pad, constant_values=-1)
  return out_items, out_scores, out_ranks


def beam_search(tokens_to_logits: TokensToLogits, cache: Any, constraint, *,
                batch_size: int, beam_size: int, num_results: int,
                constrained: bool = True, num_groups: int = 1,
                diversity_penalty: float = 0.0) -> BeamSearchOutput:
  """Beam search for item identifiers (pure; call under jax.jit).

  Args:
    tokens_to_logits: (DecodingState) -> (float[B*K, V] logits, new cache).
    cache: initial decoder cache, batched leaves with leading dim B*K (the K
      copies of a query contiguous).
    constraint: `trie.Trie` or `candidates.CandidateSet` (its prefix tokens
      are always forced; in unconstrained mode it is only used to map the
      generated sequences to items).
    batch_size: B. beam_size: K. num_results: R items returned per query.
    constrained: restrict every step to the trie.
    num_groups: G > 1 runs diverse (group) beam search; K % G == 0.
    diversity_penalty: Hamming penalty per earlier choice of a token.
  Returns:
    `BeamSearchOutput`.
  """
  if beam_size % num_groups:
    raise ValueError(f"beam_size {beam_size} is not a multiple of num_groups {num_groups}")
  b, k = batch_size, beam_size
  prefix = constraint.prefix_tokens
  p = int(prefix.shape[0])
  levels = constraint.levels
  steps = p + len(levels)
  starts = jnp.arange(k) % (k // num_groups) == 0       # one live beam per group
  scores = jnp.broadcast_to(jnp.where(starts, 0.0, NEG_INF), (b, k)).astype(jnp.float32)
  logp = scores
  nodes = jnp.zeros((b, k), jnp.int32)
  seqs = jnp.zeros((b, k, steps), jnp.int32)
  cur = jnp.zeros((b * k,), jnp.int32)
  gs = k // num_groups
  for t in range(steps):
    logits, cache = tokens_to_logits(DecodingState(t, cur, seqs.reshape(b * k, steps),
                                                   cache))
    vocab = logits.shape[-1]
    # log p = logit - logsumexp: candidates are gathered from the raw logits
    # and normalised afterwards (no [B*K, V] log-softmax array is written).
    lp = logits.astype(jnp.float32).reshape(b, k, vocab)
    lse = jax.nn.logsumexp(lp, axis=-1, keepdims=True)
    # Until the first free choice (step p) only the first beam of each group is
    # alive: expand just those (statically known), not K beams of -inf.
    live = jnp.arange(num_groups) * gs if t <= p else None
    sub = (lambda a: a[:, live]) if t <= p else (lambda a: a)
    l_nodes, l_lp, l_scores, l_logp = sub(nodes), sub(lp), sub(scores), sub(logp)
    k_in = l_nodes.shape[1]
    if t < p:
      tokens = jnp.full((b, k_in, 1), prefix[t], jnp.int32)
      child = l_nodes[..., None]
      cand = l_lp[..., prefix[t]][..., None]
    elif not constrained:
      tokens = jnp.broadcast_to(jnp.arange(vocab, dtype=jnp.int32), (b, k_in, vocab))
      child = None
      cand = l_lp
    else:
      tokens, child, cand = levels[t - p].score(l_nodes, l_lp)
    cand = cand - sub(lse)                                  # -inf stays -inf
    # every group must see at least as many candidates as it keeps beams.
    width = -(-gs // (k_in // num_groups))
    cand = _pad_width(cand, width, NEG_INF)
    tokens = _pad_width(tokens, width, 0)
    child = None if child is None else _pad_width(child, width, 0)
    w = cand.shape[-1]
    if num_groups > 1:
      scores, origin, flat = _select_diverse(l_scores[..., None] + cand, tokens,
                                             num_groups, diversity_penalty, vocab, k)
    else:
      scores, origin, flat = _select_topk(l_scores[..., None] + cand, k)
    alive = scores > NEG_INF
    pick = lambda a, w=w, k_in=k_in: jnp.take_along_axis(
        jnp.broadcast_to(a, (b, k_in, w)).reshape(b, k_in * w), flat, axis=1)
    new_tok = jnp.where(alive, (flat % w).astype(jnp.int32) if child is None
                        else pick(tokens), 0)
    logp = jnp.where(alive, pick(l_logp[..., None] + cand), NEG_INF)
    if child is not None:
      nodes = jnp.where(alive, pick(child), 0)
    if live is not None:
      origin = live[origin]
    seqs = jnp.take_along_axis(seqs, origin[..., None], axis=1).at[:, :, t].set(new_tok)
    cur = new_tok.reshape(b * k)
    if t + 1 < steps:
      cache = jax.tree_util.tree_map(lambda x: gather_beams(x, origin, b, k), cache)

  leaves = nodes if constrained else trie_lib.lookup(constraint, seqs)
  if num_groups > 1:   # rank by log-probability, drop repeated identifiers
    order = jnp.argsort(-logp, axis=1, stable=True)
    logp = jnp.take_along_axis(logp, order, axis=1)
    leaves = jnp.take_along_axis(leaves, order, axis=1)
    seqs = jnp.take_along_axis(seqs, order[..., None], axis=1)
    same = ((leaves[:, :, None] == leaves[:, None, :]) & (leaves >= 0)[:, None, :]
            & (logp > NEG_INF)[:, None, :] & jnp.tril(jnp.ones((k, k), bool), -1))
    logp = jnp.where(jnp.any(same, axis=-1), NEG_INF, logp)
    order = jnp.argsort(-logp, axis=1, stable=True)
    logp = jnp.take_along_axis(logp, order, axis=1)
    leaves = jnp.take_along_axis(leaves, order, axis=1)
    seqs = jnp.take_along_axis(seqs, order[..., None], axis=1)
  items, item_scores, ranks = _expand_items(constraint, leaves, logp, num_results)
  return BeamSearchOutput(items=items, scores=item_scores, ranks=ranks, sequences=seqs,
                          beam_scores=logp, beam_leaves=jnp.where(logp > NEG_INF,
                                                                  leaves, -1))
