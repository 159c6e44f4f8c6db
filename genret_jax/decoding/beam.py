"""Beam search over item identifiers: one pure, jittable function.

`beam_search` runs a fixed number of steps (forced prefix + ID length, or
`num_steps` without a constraint); each step calls an injected T5X-style
`tokens_to_logits(DecodingState) -> (logits [B*K, V], new_cache)`, accumulates
log-probabilities, takes top-k over beams x allowed continuations, and gathers
the beams' tokens, trie nodes and cache. The constraint (a `trie.Trie` or a
`candidates.CandidateSet`) is a pytree argument. Its levels have different
shapes (dense / CSR widths), so the steps are unrolled at trace time; they are
few (1-8).

Modes:
* constrained (default): only continuations present in the trie.
* unconstrained: top-k over the whole vocabulary (the forced prefix is still
  forced); the generated sequences are looked up in the trie afterwards and
  those that are not identifiers get leaf -1.
* no constraint (`constraint=None`): every token is allowed at each of
  `num_steps` steps and nothing is forced; no items are returned (`items`,
  `scores`, `ranks`, `beam_leaves` are None), only the sequences and their
  log-probabilities.
* diverse (num_groups > 1): Hamming-diverse group beam search (Vijayakumar et
  al. 2018, as in Hugging Face `num_beam_groups`): the K beams form G groups
  of K / G, groups choose in turn and a token chosen by earlier groups at this
  step costs `diversity_penalty` per choice. The penalty only steers the
  search; results are ranked by the model's log-probability and deduplicated
  by identifier (by sequence without a constraint).

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
from typing import Any, Callable, NamedTuple, Protocol

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

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
  """Result of `beam_search` for B queries, K beams, R results, T steps.

  Attributes:
    items: int32[B, R] ranked item indices, -1 padded (None without a constraint).
    scores: float32[B, R] sequence log-probability of each item's ID, -inf pad
      (None without a constraint).
    ranks: int32[B, R] rank of the beam (identifier) an item came from; items
      with equal rank share an identifier. -1 pad (None without a constraint).
    sequences: int32[B, K, T] the beams' tokens, best first.
    beam_scores: float32[B, K] the beams' log-probabilities (-inf = dead).
    beam_leaves: int32[B, K] the beams' leaves (-1 = not an identifier; None
      without a constraint).
  """
  items: jax.Array | None
  scores: jax.Array | None
  ranks: jax.Array | None
  sequences: jax.Array
  beam_scores: jax.Array
  beam_leaves: jax.Array | None


class DecodeFn(Protocol):
  """The signature of `beam_search`: what a decode function injected into
  `model_decode.search` (and the evaluation) must accept and return (T5X's
  `decode_fn`)."""

  def __call__(self, tokens_to_logits: TokensToLogits, cache: Any, constraint: Any = None, *,
               batch_size: int, beam_size: int, num_results: int, constrained: bool = True,
               num_groups: int = 1, diversity_penalty: float = 0.0,
               num_steps: int | None = None) -> BeamSearchOutput:
    ...


class _Settings(NamedTuple):
  """Static settings of one search."""
  batch_size: int
  beam_size: int
  num_groups: int
  diversity_penalty: float

  @property
  def group_size(self) -> int:
    return self.beam_size // self.num_groups


@flax.struct.dataclass
class _Beams:
  """The K beams of B queries between steps.

  Attributes:
    scores: float32[B, K] selection scores (log-probability minus diversity
      penalties; -inf = dead beam).
    logp: float32[B, K] log-probabilities.
    nodes: int32[B, K] trie node of each beam (0 = root; stays 0 unconstrained).
    sequences: int32[B, K, T] tokens so far (zeros after the current step).
  """
  scores: jax.Array
  logp: jax.Array
  nodes: jax.Array
  sequences: jax.Array


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
  b, num_in, width = total.shape
  scores, idx = jax.lax.top_k(total.reshape(b, num_in * width), beams)
  return scores, idx // width, idx


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
  b, num_in, width = total.shape
  group_in, group_out = num_in // num_groups, beams // num_groups
  by_group = lambda a: a.reshape(b, num_groups, group_in, width).transpose(1, 0, 2, 3)

  def group(counts, xs):
    g, total_g, tokens_g = xs
    flat_tokens = tokens_g.reshape(b, group_in * width)
    chosen_before = jnp.take_along_axis(counts, flat_tokens, axis=1)
    s, idx = jax.lax.top_k(total_g.reshape(b, group_in * width) - penalty * chosen_before,
                           group_out)
    chosen = jnp.take_along_axis(flat_tokens, idx, axis=1)
    alive = s > NEG_INF
    counts = jax.vmap(lambda c, t, a: c.at[t].add(a))(counts, chosen,
                                                      alive.astype(counts.dtype))
    origin = g * group_in + idx // width
    return counts, (s, origin, origin * width + idx % width)

  counts = jnp.zeros((b, vocab_size), jnp.float32)
  _, (s, origin, flat) = jax.lax.scan(
      group, counts, (jnp.arange(num_groups), by_group(total), by_group(tokens)))
  merge = lambda a: a.transpose(1, 0, 2).reshape(b, beams)
  return merge(s), merge(origin), merge(flat)


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


def decode_length(constraint: Any, num_steps: int | None = None) -> int:
  """Steps a search takes: P + L for a constraint, else `num_steps` (required then).

  Raises:
    ValueError: num_steps missing without a constraint, or not P + L with one.
  """
  if constraint is None:
    if num_steps is None or num_steps < 1:
      raise ValueError(f"beam_search without a constraint needs num_steps >= 1, got "
                       f"{num_steps}")
    return int(num_steps)
  steps = int(constraint.prefix_tokens.shape[0]) + len(constraint.levels)
  if num_steps is not None and num_steps != steps:
    raise ValueError(f"num_steps {num_steps} differs from the constraint's {steps} "
                     "(prefix + ID length)")
  return steps


def _initial_beams(cfg: _Settings, steps: int) -> _Beams:
  """One live beam (score 0) at the start of each group, the others dead."""
  b, k = cfg.batch_size, cfg.beam_size
  starts = jnp.arange(k) % cfg.group_size == 0
  scores = jnp.broadcast_to(jnp.where(starts, 0.0, NEG_INF), (b, k)).astype(jnp.float32)
  return _Beams(scores=scores, logp=scores, nodes=jnp.zeros((b, k), jnp.int32),
                sequences=jnp.zeros((b, k, steps), jnp.int32))


def _continuations(nodes: jax.Array, logits: jax.Array, forced_token, level):
  """The candidate next tokens of each expanded beam.

  Args:
    nodes: int32[B, Kin] trie nodes.
    logits: float32[B, Kin, V].
    forced_token: the prefix token of this step, or None.
    level: the trie level of this step, or None when every token is allowed.
  Returns:
    tokens int32[B, Kin, W], child int32[B, Kin, W] or None (unconstrained),
    cand float32[B, Kin, W] logits (-inf where not allowed).
  """
  if forced_token is not None:
    tokens = jnp.full(nodes.shape + (1,), forced_token, jnp.int32)
    return tokens, nodes[..., None], logits[..., forced_token][..., None]
  if level is None:
    vocab = logits.shape[-1]
    return jnp.broadcast_to(jnp.arange(vocab, dtype=jnp.int32), logits.shape), None, logits
  return level.score(nodes, logits)


def _pick(a: jax.Array, flat: jax.Array, shape: tuple[int, int, int]) -> jax.Array:
  """Elements `flat` [B, K] of `a` broadcast to [B, Kin, W] (flattened over Kin x W)."""
  b, num_in, width = shape
  return jnp.take_along_axis(jnp.broadcast_to(a, shape).reshape(b, num_in * width), flat,
                             axis=1)


def _advance(beams: _Beams, logits: jax.Array, t: int, forced_token, level,
             before_free_choice: bool, cfg: _Settings) -> tuple[_Beams, jax.Array]:
  """One step: expand the beams by their continuations, select K, gather.

  Args:
    logits: float[B*K, V] next-token logits of the beams.
    t: the step number.
    forced_token / level: see `_continuations`.
    before_free_choice: no free choice made yet (steps <= P), so only the
      first beam of each group is alive: expand just those (statically known),
      not K beams of -inf.
  Returns:
    The new beams and origin int32[B, K] (the old beam each one extends).
  """
  b, k = cfg.batch_size, cfg.beam_size
  vocab = logits.shape[-1]
  # log p = logit - logsumexp: candidates are gathered from the raw logits
  # and normalised afterwards (no [B*K, V] log-softmax array is written).
  logits = logits.astype(jnp.float32).reshape(b, k, vocab)
  lse = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
  live = np.arange(cfg.num_groups) * cfg.group_size if before_free_choice else None
  expand = (lambda a: a[:, live]) if live is not None else (lambda a: a)
  nodes_in, logp_in = expand(beams.nodes), expand(beams.logp)
  tokens, child, cand = _continuations(nodes_in, expand(logits), forced_token, level)
  cand = cand - expand(lse)                                 # -inf stays -inf
  num_in = nodes_in.shape[1]
  # every group must see at least as many candidates as it keeps beams.
  width = -(-cfg.group_size // (num_in // cfg.num_groups))
  cand = _pad_width(cand, width, NEG_INF)
  tokens = _pad_width(tokens, width, 0)
  child = None if child is None else _pad_width(child, width, 0)
  shape = (b, num_in, cand.shape[-1])
  total = expand(beams.scores)[..., None] + cand
  if cfg.num_groups > 1:
    scores, origin, flat = _select_diverse(total, tokens, cfg.num_groups,
                                           cfg.diversity_penalty, vocab, k)
  else:
    scores, origin, flat = _select_topk(total, k)
  alive = scores > NEG_INF
  new_tokens = jnp.where(alive, (flat % shape[2]).astype(jnp.int32) if child is None
                         else _pick(tokens, flat, shape), 0)
  logp = jnp.where(alive, _pick(logp_in[..., None] + cand, flat, shape), NEG_INF)
  nodes = beams.nodes if child is None else jnp.where(alive, _pick(child, flat, shape), 0)
  if live is not None:
    origin = jnp.asarray(live)[origin]
  sequences = jnp.take_along_axis(beams.sequences, origin[..., None], axis=1)
  sequences = sequences.at[:, :, t].set(new_tokens)
  return _Beams(scores=scores, logp=logp, nodes=nodes, sequences=sequences), origin


def _sort_by_logp(logp: jax.Array, leaves: jax.Array | None, sequences: jax.Array):
  """Beams reordered by descending log-probability (stable)."""
  order = jnp.argsort(-logp, axis=1, stable=True)
  leaves = None if leaves is None else jnp.take_along_axis(leaves, order, axis=1)
  return (jnp.take_along_axis(logp, order, axis=1), leaves,
          jnp.take_along_axis(sequences, order[..., None], axis=1))


def _drop_repeats(logp: jax.Array, leaves: jax.Array | None, sequences: jax.Array):
  """Ranks beams by log-probability and kills repeats of a better beam's
  identifier (of its sequence when `leaves` is None)."""
  logp, leaves, sequences = _sort_by_logp(logp, leaves, sequences)
  k = logp.shape[1]
  if leaves is None:
    same = jnp.all(sequences[:, :, None] == sequences[:, None, :], axis=-1)
  else:
    same = (leaves[:, :, None] == leaves[:, None, :]) & (leaves >= 0)[:, None, :]
  same &= (logp > NEG_INF)[:, None, :] & jnp.tril(jnp.ones((k, k), bool), -1)
  logp = jnp.where(jnp.any(same, axis=-1), NEG_INF, logp)
  return _sort_by_logp(logp, leaves, sequences)


def _finish(beams: _Beams, constraint, constrained: bool, cfg: _Settings,
            num_results: int) -> BeamSearchOutput:
  """Final beams -> leaves, deduplicated ranking (diverse mode) and items."""
  logp, sequences = beams.logp, beams.sequences
  leaves = None
  if constraint is not None:
    leaves = beams.nodes if constrained else trie_lib.lookup(constraint, sequences)
  if cfg.num_groups > 1:
    logp, leaves, sequences = _drop_repeats(logp, leaves, sequences)
  if constraint is None:
    return BeamSearchOutput(items=None, scores=None, ranks=None, sequences=sequences,
                            beam_scores=logp, beam_leaves=None)
  items, item_scores, ranks = _expand_items(constraint, leaves, logp, num_results)
  return BeamSearchOutput(items=items, scores=item_scores, ranks=ranks, sequences=sequences,
                          beam_scores=logp,
                          beam_leaves=jnp.where(logp > NEG_INF, leaves, -1))


def beam_search(tokens_to_logits: TokensToLogits, cache: Any, constraint: Any = None, *,
                batch_size: int, beam_size: int, num_results: int,
                constrained: bool = True, num_groups: int = 1,
                diversity_penalty: float = 0.0,
                num_steps: int | None = None) -> BeamSearchOutput:
  """Beam search for item identifiers (pure; call under jax.jit).

  Args:
    tokens_to_logits: (DecodingState) -> (float[B*K, V] logits, new cache).
    cache: initial decoder cache, batched leaves with leading dim B*K (the K
      copies of a query contiguous).
    constraint: `trie.Trie` or `candidates.CandidateSet` (its prefix tokens
      are always forced; in unconstrained mode it is only used to map the
      generated sequences to items), or None: every token allowed, nothing
      forced, no items returned.
    batch_size: B. beam_size: K. num_results: R items returned per query.
    constrained: restrict every step to the trie (no effect without one).
    num_groups: G > 1 runs diverse (group) beam search; K % G == 0.
    diversity_penalty: Hamming penalty per earlier choice of a token.
    num_steps: tokens to generate; required without a constraint (with one
      it is P + L).
  Returns:
    `BeamSearchOutput`.
  Raises:
    ValueError: K not a multiple of G, or num_steps missing / inconsistent.
  """
  if beam_size % num_groups:
    raise ValueError(f"beam_size {beam_size} is not a multiple of num_groups {num_groups}")
  cfg = _Settings(batch_size, beam_size, num_groups, diversity_penalty)
  steps = decode_length(constraint, num_steps)
  prefix = () if constraint is None else constraint.prefix_tokens
  num_forced = 0 if constraint is None else int(prefix.shape[0])
  levels = constraint.levels if constraint is not None and constrained else None
  beams = _initial_beams(cfg, steps)
  flat = batch_size * beam_size
  cur_token = jnp.zeros((flat,), jnp.int32)
  for t in range(steps):
    logits, cache = tokens_to_logits(DecodingState(
        t, cur_token, beams.sequences.reshape(flat, steps), cache))
    forced = prefix[t] if t < num_forced else None
    level = levels[t - num_forced] if levels is not None and t >= num_forced else None
    beams, origin = _advance(beams, logits, t, forced, level, t <= num_forced, cfg)
    cur_token = beams.sequences[:, :, t].reshape(flat)
    if t + 1 < steps:
      cache = jax.tree_util.tree_map(
          lambda x: gather_beams(x, origin, batch_size, beam_size), cache)
  return _finish(beams, constraint, constrained and constraint is not None, cfg, num_results)
