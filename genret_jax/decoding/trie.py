"""Trie transition tables for constrained decoding, built vectorized in numpy.

A catalog of `N` items with `L`-code identifiers becomes one table per level:

* `DenseLevel`: `next[node, code] -> child node or -1`, int32[num_nodes, size].
* `CsrLevel`: the same transitions in a sorted CSR layout: `row_ptr`
  int32[num_nodes + 1] and `codes` int32[nnz]; the edges of a node are sorted
  by code and children are numbered in edge order, so the child reached by
  edge `e` is node `e` of the next level (no child array is stored). A step
  gathers `width` (the level's max branching) edges per beam and masks the
  rest.

Both expose the same two operations used by the beam search:
`score(nodes, scores_v)` (the allowed continuations of each beam, with their
scores) and `step(nodes, tokens)` (follow one token, -1 if absent).
The last level's nodes are leaves: distinct identifiers. `leaf_start` /
`leaf_items` map a leaf to the items that share that identifier (ascending
item index), so duplicate identifiers are kept, never dropped.

All tables are pytree leaves (jit arguments, not constants): a new catalog with
the same table shapes reuses the compiled decoder. Static metadata (token
offset, level size and CSR width) is part of the jit cache key; pass
`csr_widths` to pin widths across catalogs.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

NEG_INF = -np.inf


@flax.struct.dataclass
class DenseLevel:
  """One trie level as a dense table.

  Attributes:
    next: int32[num_nodes, size]; child node at the next level, or -1.
    offset: token id of code 0 of this level.
  """
  next: jax.Array
  offset: int = flax.struct.field(pytree_node=False)

  @property
  def size(self) -> int:
    return int(self.next.shape[1])

  @property
  def width(self) -> int:
    return self.size

  @property
  def nbytes(self) -> int:
    return int(self.next.size) * 4

  def score(self, nodes: jax.Array, scores_v: jax.Array):
    """Allowed continuations of each beam.

    Args:
      nodes: int32[B, K] current node of each beam.
      scores_v: float32[B, K, V] next-token scores (logits or log-probs).
    Returns:
      tokens int32[B, K, W], child int32[B, K, W], cand float32[B, K, W]
      (the token's score, -inf where the continuation is not in the trie).
    """
    child = self.next[nodes]
    tokens = jnp.broadcast_to(self.offset + jnp.arange(self.size, dtype=jnp.int32),
                              child.shape)
    cand = jnp.where(child >= 0, scores_v[..., self.offset:self.offset + self.size],
                     NEG_INF)
    return tokens, child, cand

  def step(self, nodes: jax.Array, tokens: jax.Array) -> jax.Array:
    """Child reached from `nodes` by `tokens` (same shape), -1 if none."""
    code = tokens - self.offset
    ok = (nodes >= 0) & (code >= 0) & (code < self.size)
    child = self.next[jnp.clip(nodes, 0, self.next.shape[0] - 1),
                      jnp.clip(code, 0, self.size - 1)]
    return jnp.where(ok, child, -1)


@flax.struct.dataclass
class CsrLevel:
  """One trie level as sorted CSR rows (see module docstring).

  Attributes:
    row_ptr: int32[num_nodes + 1]; edges of node n are row_ptr[n]:row_ptr[n+1].
    codes: int32[nnz]; the code of each edge, ascending within a row.
    offset: token id of code 0 of this level.
    size: number of codes of this level.
    width: edges gathered per beam (>= the level's max branching).
  """
  row_ptr: jax.Array
  codes: jax.Array
  offset: int = flax.struct.field(pytree_node=False)
  size: int = flax.struct.field(pytree_node=False)
  width: int = flax.struct.field(pytree_node=False)

  @property
  def nbytes(self) -> int:
    return (int(self.row_ptr.size) + int(self.codes.size)) * 4

  def _edges(self, nodes: jax.Array):
    start = self.row_ptr[nodes]
    count = self.row_ptr[nodes + 1] - start
    j = jnp.arange(self.width, dtype=jnp.int32)
    valid = j < count[..., None]
    edges = jnp.where(valid, start[..., None] + j, 0)
    return edges, valid

  def score(self, nodes: jax.Array, scores_v: jax.Array):
    """Same contract as `DenseLevel.score`, with W = width."""
    edges, valid = self._edges(nodes)
    tokens = self.offset + self.codes[edges]
    cand = jnp.where(valid, jnp.take_along_axis(scores_v, tokens, axis=-1), NEG_INF)
    return tokens, edges, cand

  def step(self, nodes: jax.Array, tokens: jax.Array) -> jax.Array:
    """Child reached from `nodes` by `tokens` (same shape), -1 if none."""
    edges, valid = self._edges(jnp.clip(nodes, 0, self.row_ptr.shape[0] - 2))
    match = valid & (self.codes[edges] + self.offset == tokens[..., None])
    match &= (nodes >= 0)[..., None]
    child = jnp.sum(jnp.where(match, edges, 0), axis=-1)
    return jnp.where(jnp.any(match, axis=-1), child, -1)


@flax.struct.dataclass
class Trie:
  """A catalog's identifier trie (a pytree of jit arguments).

  Attributes:
    levels: L `DenseLevel` / `CsrLevel`; level l consumes the l-th ID token.
    leaf_start: int32[num_leaves + 1]; items of leaf f are
      leaf_items[leaf_start[f]:leaf_start[f+1]].
    leaf_items: int32[num_items]; item indices grouped by leaf, ascending
      within a leaf.
    prefix_tokens: int32[P]; tokens forced before the ID (e.g. a behaviour
      token); P may be 0.
    max_dup: the most items sharing one identifier.
  """
  levels: tuple
  leaf_start: jax.Array
  leaf_items: jax.Array
  prefix_tokens: jax.Array
  max_dup: int = flax.struct.field(pytree_node=False)

  @property
  def num_items(self) -> int:
    return int(self.leaf_items.shape[0])

  @property
  def num_leaves(self) -> int:
    return int(self.leaf_start.shape[0]) - 1

  @property
  def nbytes(self) -> int:
    """Bytes of all tables (levels + leaf -> item map + prefix)."""
    return (sum(lv.nbytes for lv in self.levels) + 4 * (int(self.leaf_start.size)
            + int(self.leaf_items.size) + int(self.prefix_tokens.size)))

  def items(self, leaves: jax.Array):
    """Items sharing each leaf's identifier.

    Args:
      leaves: int32[B, K] leaf per beam (-1 = no leaf).
    Returns:
      items int32[B, K, max_dup] (-1 padded) and valid bool[B, K, max_dup].
    """
    safe = jnp.clip(leaves, 0, self.num_leaves - 1)
    start = self.leaf_start[safe]
    count = jnp.where(leaves >= 0, self.leaf_start[safe + 1] - start, 0)
    j = jnp.arange(self.max_dup, dtype=jnp.int32)
    valid = j < count[..., None]
    idx = jnp.where(valid, start[..., None] + j, 0)
    return jnp.where(valid, self.leaf_items[idx], -1), valid


def lookup(constraint, sequences: jax.Array) -> jax.Array:
  """Leaf reached by full token sequences, -1 if not an identifier.

  Works for a `Trie` or a `candidates.CandidateSet`.

  Args:
    constraint: has `prefix_tokens` int32[P] and `levels` (with `step`).
    sequences: int32[B, K, P + L] generated tokens.
  Returns:
    int32[B, K] leaf index or -1.
  """
  p = int(constraint.prefix_tokens.shape[0])
  ok = jnp.all(sequences[..., :p] == constraint.prefix_tokens, axis=-1)
  nodes = jnp.where(ok, 0, -1).astype(jnp.int32)
  for l, level in enumerate(constraint.levels):
    nodes = level.step(nodes, sequences[..., p + l])
  return nodes


def build_trie(codes: np.ndarray, level_offsets: Sequence[int],
               level_sizes: Sequence[int], *, prefix_tokens: Sequence[int] = (),
               dense_max_mb: float = 8.0,
               csr_widths: Sequence[int] | None = None) -> Trie:
  """Builds the trie tables of a catalog (vectorized numpy; O(N L log N)).

  Args:
    codes: int[N, L]; codes[i, l] in [0, level_sizes[l]).
    level_offsets: L ints; the token id of code k at level l is
      level_offsets[l] + k.
    level_sizes: L codebook sizes.
    prefix_tokens: token ids forced before every identifier.
    dense_max_mb: a level whose dense table would exceed this many MiB is
      stored as CSR (0 = CSR everywhere, inf = dense everywhere).
    csr_widths: optional L widths for CSR levels (>= max branching), so that
      catalogs with different branching share one compiled decoder.
  Returns:
    A `Trie` of numpy-backed arrays (pass to jit as an argument).
  Raises:
    ValueError: on shapes or codes out of range.
  """
  codes = np.asarray(codes)
  if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
    raise ValueError(f"build_trie: codes must be a non-empty [num_items, L] array, "
                     f"got shape {codes.shape}")
  n, depth = codes.shape
  if len(level_offsets) != depth or len(level_sizes) != depth:
    raise ValueError(f"build_trie: {depth} ID levels but {len(level_offsets)} "
                     f"level_offsets and {len(level_sizes)} level_sizes")
  if csr_widths is not None and len(csr_widths) != depth:
    raise ValueError(f"build_trie: csr_widths has {len(csr_widths)} entries, "
                     f"expected {depth}")
  sizes = np.asarray(level_sizes, np.int64)
  bad = (codes < 0) | (codes >= sizes[None, :])
  if bad.any():
    i, l = np.argwhere(bad)[0]
    raise ValueError(f"build_trie: item {i} level {l} code {codes[i, l]} is outside "
                     f"[0, {sizes[l]})")
  codes = codes.astype(np.int32)
  order = np.lexsort(codes.T[::-1]).astype(np.int32)   # stable: ties keep item order
  sc = codes[order]
  new = np.empty((n, depth), bool)
  new[0] = True
  new[1:] = sc[1:] != sc[:-1]
  new = np.logical_or.accumulate(new, axis=1)    # row starts a new prefix of length l+1
  node_ids = np.cumsum(new, axis=0, dtype=np.int64) - 1   # node at depth l+1
  levels = []
  parent_of_row = np.zeros(n, np.int64)
  num_nodes = 1
  for l in range(depth):
    rows = np.flatnonzero(new[:, l])
    parent = parent_of_row[rows]
    code = sc[rows, l]
    size = int(sizes[l])
    dense_bytes = num_nodes * size * 4
    if dense_bytes <= dense_max_mb * 2**20:
      table = np.full((num_nodes, size), -1, np.int32)
      table[parent, code] = np.arange(rows.size, dtype=np.int32)
      levels.append(DenseLevel(next=table, offset=int(level_offsets[l])))
    else:
      counts = np.bincount(parent, minlength=num_nodes)
      row_ptr = np.zeros(num_nodes + 1, np.int32)
      np.cumsum(counts, out=row_ptr[1:])
      width = int(counts.max())
      if csr_widths is not None:
        if csr_widths[l] < width:
          raise ValueError(f"build_trie: csr_widths[{l}]={csr_widths[l]} is below the "
                           f"level's max branching {width}")
        width = int(csr_widths[l])
      levels.append(CsrLevel(row_ptr=row_ptr, codes=code.astype(np.int32),
                             offset=int(level_offsets[l]), size=size, width=width))
    parent_of_row = node_ids[:, l]
    num_nodes = rows.size
  leaf_counts = np.bincount(parent_of_row, minlength=num_nodes)
  leaf_start = np.zeros(num_nodes + 1, np.int32)
  np.cumsum(leaf_counts, out=leaf_start[1:])
  return Trie(levels=tuple(levels), leaf_start=leaf_start, leaf_items=order,
              prefix_tokens=np.asarray(prefix_tokens, np.int32).reshape(-1),
              max_dup=int(leaf_counts.max()))


class CodeTable(Protocol):
  """What `trie_from_id_table` reads of a table: an `ids.types.IdTable`, or any
  object with these two attributes."""
  codes: np.ndarray            # int[N, L], codes[i, l] in [0, level_sizes[l])
  level_sizes: Sequence[int]   # L codebook sizes


def trie_from_id_table(table: CodeTable, level_offsets: Sequence[int], *,
                       prefix_tokens: Sequence[int] = (), dense_max_mb: float = 8.0,
                       csr_widths: Sequence[int] | None = None) -> Trie:
  """`build_trie(table.codes, level_offsets, table.level_sizes, ...)`; only the
  table's `codes` and `level_sizes` are read (no name or token prefixes needed)."""
  return build_trie(table.codes, level_offsets, table.level_sizes,
                    prefix_tokens=prefix_tokens, dense_max_mb=dense_max_mb,
                    csr_widths=csr_widths)
