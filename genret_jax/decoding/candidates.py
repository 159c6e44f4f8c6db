"""Per-query candidate tries for the sampled protocol (1 positive + 99 negatives).

Instead of building one trie per query on the host (GenSAR's per-example
Python trie), a batch of candidate lists int32[B, C] becomes a batched table
inside jit. Node ids are candidate positions: the node of a prefix is the
*representative* of that prefix, the first candidate (lowest position) whose
identifier starts with it. At level l a beam in node `r` may continue with
candidate `c` iff `rep[l-1][c] == r` (same parent prefix) and `rep[l][c] == c`
(c represents its own length-(l+1) prefix, so each continuation appears once).
Cost per step is O(B K C), with no Python loop over queries.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from genret_jax.decoding.trie import NEG_INF

_NO_NODE = -2   # never equal to a node id (>= 0) nor to the -1 "no child" marker


@flax.struct.dataclass
class CandidateLevel:
  """Level l of a batch of candidate tries.

  Attributes:
    tokens: int32[B, C]; token id of each candidate's l-th ID code.
    rep_prev: int32[B, C]; node of the candidate's length-l prefix.
    rep_cur: int32[B, C]; node of the candidate's length-(l+1) prefix.
  """
  tokens: jax.Array
  rep_prev: jax.Array
  rep_cur: jax.Array

  @property
  def width(self) -> int:
    return int(self.tokens.shape[1])

  def score(self, nodes: jax.Array, scores_v: jax.Array):
    """Same contract as `trie.DenseLevel.score`, with W = C."""
    c = jnp.arange(self.width, dtype=jnp.int32)
    valid = ((self.rep_prev[:, None, :] == nodes[..., None])
             & (self.rep_cur == c)[:, None, :])
    tokens = jnp.broadcast_to(self.tokens[:, None, :], valid.shape)
    cand = jnp.where(valid, jnp.take_along_axis(scores_v, tokens, axis=-1), NEG_INF)
    return tokens, jnp.broadcast_to(c, valid.shape), cand

  def step(self, nodes: jax.Array, tokens: jax.Array) -> jax.Array:
    """Child reached from `nodes` [B, K] by `tokens` [B, K], -1 if none."""
    match = ((self.rep_prev[:, None, :] == nodes[..., None])
             & (self.tokens[:, None, :] == tokens[..., None]) & (nodes >= 0)[..., None])
    first = jnp.argmax(match, axis=-1).astype(jnp.int32)
    return jnp.where(jnp.any(match, axis=-1), first, -1)


@flax.struct.dataclass
class CandidateSet:
  """A batch of per-query candidate tries; same interface as `trie.Trie`.

  Attributes:
    levels: L `CandidateLevel`s.
    candidates: int32[B, C] item indices (-1 = padding).
    rep_last: int32[B, C]; leaf (full-ID representative) of each candidate.
    prefix_tokens: int32[P] tokens forced before the ID.
  """
  levels: tuple
  candidates: jax.Array
  rep_last: jax.Array
  prefix_tokens: jax.Array

  @property
  def max_dup(self) -> int:
    return int(self.candidates.shape[1])

  def items(self, leaves: jax.Array):
    """Candidates sharing each beam's identifier: int32[B, K, C] and valid."""
    valid = (self.rep_last[:, None, :] == leaves[..., None]) & (leaves >= 0)[..., None]
    items = jnp.where(valid, self.candidates[:, None, :], -1)
    return items, valid


def candidate_set(item_tokens: jax.Array, candidates: jax.Array,
                  prefix_tokens: jax.Array) -> CandidateSet:
  """Builds the batched candidate tries (jittable).

  Args:
    item_tokens: int32[N, L] token ids of every catalog item's identifier
      (codes + level offsets).
    candidates: int32[B, C] distinct item indices per query, -1 for padding
      (any order; they are sorted by item index).
    prefix_tokens: int32[P] tokens forced before the ID.
  Returns:
    A `CandidateSet` whose results only ever contain the given candidates.
  """
  candidates = jnp.asarray(candidates, jnp.int32)
  # ascending item index (padding last), so items sharing an ID come out in
  # item order as with the full-catalog trie.
  big = jnp.iinfo(jnp.int32).max
  candidates = jnp.sort(jnp.where(candidates >= 0, candidates, big), axis=1)
  candidates = jnp.where(candidates == big, -1, candidates)
  valid = candidates >= 0
  tok = jnp.asarray(item_tokens, jnp.int32)[jnp.maximum(candidates, 0)]   # [B, C, L]
  both = valid[:, :, None] & valid[:, None, :]
  same = both
  rep_prev = jnp.where(valid, 0, _NO_NODE).astype(jnp.int32)
  levels = []
  for l in range(tok.shape[-1]):
    same = same & (tok[:, :, None, l] == tok[:, None, :, l])     # [B, C, C]
    rep = jnp.where(valid, jnp.argmax(same, axis=-1), _NO_NODE).astype(jnp.int32)
    levels.append(CandidateLevel(tokens=tok[..., l], rep_prev=rep_prev, rep_cur=rep))
    rep_prev = rep
  return CandidateSet(levels=tuple(levels), candidates=candidates, rep_last=rep_prev,
                      prefix_tokens=jnp.asarray(prefix_tokens, jnp.int32).reshape(-1))
