"""Beam search against brute force, in every mode, batched, and on an 8-device mesh.

The scorer is a synthetic recurrent "decoder" whose next-token distribution
depends on the query and on the whole prefix through its cache, so beam
reordering and cache gathers are exercised exactly as with the T5 KV cache.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genret_jax.decoding import beam as bs
from genret_jax.decoding import candidates as cand_lib
from genret_jax.decoding import trie as trie_lib

DIM = 8


class Scorer:
  """tokens_to_logits with cache {'h': [B*K, DIM], 'index': scalar}."""

  def __init__(self, seed, vocab, num_queries, scale=2.0):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    self.emb = jax.random.normal(k[0], (vocab, DIM))
    self.w = jax.random.normal(k[1], (DIM, DIM))
    self.out = scale * jax.random.normal(k[2], (DIM, vocab))
    self.queries = jax.random.normal(k[3], (num_queries, DIM))

  def tokens_to_logits(self, state):
    h = jnp.tanh(state.cache["h"] @ self.w + self.emb[state.cur_token])
    return h @ self.out, {"h": h, "index": state.cache["index"] + 1}

  def cache(self, queries, beams):
    return {"h": jnp.repeat(queries, beams, axis=0), "index": jnp.zeros((), jnp.int32)}

  def brute_force(self, query, seqs):
    """Teacher-forced log-probability of every sequence [N, T] for one query."""
    n = seqs.shape[0]
    h = jnp.repeat(query[None], n, axis=0)
    cur = jnp.zeros(n, jnp.int32)
    total = jnp.zeros(n)
    for t in range(seqs.shape[1]):
      h = jnp.tanh(h @ self.w + self.emb[cur])
      lp = jax.nn.log_softmax(h @ self.out)
      total += lp[jnp.arange(n), seqs[:, t]]
      cur = jnp.asarray(seqs[:, t])
    return np.asarray(total)


def _catalog(seed, n, sizes, prefix=(1,), dup_frac=0.0):
  rng = np.random.default_rng(seed)
  codes = np.stack([rng.integers(0, s, n) for s in sizes], 1).astype(np.int32)
  if dup_frac:
    k = int(n * dup_frac)
    codes[-k:] = codes[rng.integers(0, n - k, k)]
  offsets = np.concatenate([[3], 3 + np.cumsum(sizes)[:-1]]).astype(np.int32)
  vocab = 3 + int(np.sum(sizes)) + 2
  seqs = np.concatenate([np.tile(np.asarray(prefix, np.int32), (n, 1)), codes + offsets], 1)
  return codes, offsets, vocab, seqs


@functools.partial(jax.jit, static_argnames=("scorer", "beam", "results", "constrained",
                                             "groups", "penalty", "steps"))
def _search(queries, constraint, *, scorer, beam, results, constrained=True, groups=1,
            penalty=0.0, steps=None):
  return bs.beam_search(scorer.tokens_to_logits, scorer.cache(queries, beam), constraint,
                        batch_size=queries.shape[0], beam_size=beam, num_results=results,
                        constrained=constrained, num_groups=groups,
                        diversity_penalty=penalty, num_steps=steps)


def _brute_ranking(scorer, query, seqs, allowed=None):
  s = scorer.brute_force(query, seqs)
  if allowed is not None:
    s = np.where(np.isin(np.arange(len(s)), allowed), s, -np.inf)
  order = np.lexsort((np.arange(len(s)), -s))
  return order[np.isfinite(s[order])], s


@pytest.mark.parametrize("dense_max_mb", [np.inf, 0.0])
def test_exact_brute_force_topk_with_duplicates(dense_max_mb):
  codes, offsets, vocab, seqs = _catalog(0, 40, (3, 4, 3), dup_frac=0.2)
  trie = trie_lib.build_trie(codes, offsets, (3, 4, 3), prefix_tokens=[1],
                             dense_max_mb=dense_max_mb)
  scorer = Scorer(1, vocab, 4)
  out = _search(scorer.queries, trie, scorer=scorer, beam=trie.num_leaves, results=40)
  assert trie.max_dup > 1
  for q in range(4):
    order, s = _brute_ranking(scorer, scorer.queries[q], seqs)
    np.testing.assert_array_equal(np.asarray(out.items[q]), order)
    np.testing.assert_allclose(np.asarray(out.scores[q]), s[order], rtol=1e-5, atol=1e-5)
    ranks = np.asarray(out.ranks[q])
    # items sharing an ID share a rank, and only they do.
    same_id = (codes[order][:, None] == codes[order][None]).all(-1)
    np.testing.assert_array_equal(same_id, ranks[:, None] == ranks[None])


@pytest.mark.parametrize("dense_max_mb,seed", [(np.inf, 0), (0.0, 1)])
def test_every_returned_id_is_in_catalog(dense_max_mb, seed):
  sizes = (5, 6, 4, 3)
  codes, offsets, vocab, seqs = _catalog(seed, 50, sizes, prefix=())
  trie = trie_lib.build_trie(codes, offsets, sizes, dense_max_mb=dense_max_mb)
  scorer = Scorer(seed + 10, vocab, 6, scale=4.0)
  out = _search(scorer.queries, trie, scorer=scorer, beam=8, results=8)
  items, seq_out = np.asarray(out.items), np.asarray(out.sequences)
  ranks = np.asarray(out.ranks)
  assert (items >= 0).all()
  # each returned item's ID is the sequence its beam generated.
  np.testing.assert_array_equal(seqs[items], np.take_along_axis(seq_out, ranks[..., None], 1))
  catalog = {tuple(s) for s in seqs}
  assert all(tuple(s) in catalog for s in seq_out.reshape(-1, seq_out.shape[-1]))
  s = np.stack([scorer.brute_force(scorer.queries[q], seqs) for q in range(6)])
  np.testing.assert_allclose(np.asarray(out.scores), np.take_along_axis(s, items, 1),
                             rtol=1e-5, atol=1e-5)


def test_atomic_ids_equal_masked_first_step_topk():
  num_items, offset = 30, 4
  vocab = offset + 40
  scorer = Scorer(3, vocab, 5)
  codes = np.random.default_rng(0).permutation(40)[:num_items, None].astype(np.int32)
  trie = trie_lib.build_trie(codes, [offset], [40])
  out = _search(scorer.queries, trie, scorer=scorer, beam=10, results=10)
  logits, _ = scorer.tokens_to_logits(bs.DecodingState(0, jnp.zeros(5, jnp.int32), None,
                                                       scorer.cache(scorer.queries, 1)))
  lp = np.asarray(jax.nn.log_softmax(logits))[:, offset + codes[:, 0]]   # [5, items]
  order = np.argsort(-lp, axis=1, kind="stable")[:, :10]
  np.testing.assert_array_equal(np.asarray(out.items), order)
  np.testing.assert_allclose(np.asarray(out.scores), np.take_along_axis(lp, order, 1),
                             rtol=1e-5, atol=1e-5)


def test_batched_equals_one_at_a_time_and_no_recompile():
  sizes = (4, 4, 4)
  codes, offsets, vocab, _ = _catalog(2, 30, sizes)
  trie = trie_lib.build_trie(codes, offsets, sizes, prefix_tokens=[1], dense_max_mb=0,
                             csr_widths=(4, 4, 4))
  scorer = Scorer(4, vocab, 5)
  batched = _search(scorer.queries, trie, scorer=scorer, beam=6, results=6)
  for q in range(5):
    one = _search(scorer.queries[q:q + 1], trie, scorer=scorer, beam=6, results=6)
    np.testing.assert_array_equal(np.asarray(one.items[0]), np.asarray(batched.items[q]))
    np.testing.assert_allclose(np.asarray(one.scores[0]), np.asarray(batched.scores[q]),
                               rtol=1e-5, atol=1e-5)
  # a new catalog with the same table shapes reuses the compiled program.
  codes2 = codes.copy()
  codes2[:, 2] = (codes2[:, 2] + 1) % 4
  trie2 = trie_lib.build_trie(codes2, offsets, sizes, prefix_tokens=[1], dense_max_mb=0,
                              csr_widths=(4, 4, 4))
  assert jax.tree.map(np.shape, trie2) == jax.tree.map(np.shape, trie)
  before = _search._cache_size()
  out2 = _search(scorer.queries, trie2, scorer=scorer, beam=6, results=6)
  assert _search._cache_size() == before
  assert set(np.asarray(out2.items).ravel()) <= set(range(30))


def test_mesh_of_8_devices_equals_one_device():
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  assert jax.device_count() == 8
  sizes = (5, 5, 5)
  codes, offsets, vocab, _ = _catalog(3, 80, sizes)
  trie = trie_lib.build_trie(codes, offsets, sizes, prefix_tokens=[1], dense_max_mb=1e-3)
  scorer = Scorer(5, vocab, 16)
  single = _search(scorer.queries, trie, scorer=scorer, beam=6, results=6)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  queries = jax.device_put(scorer.queries, NamedSharding(mesh, P("data")))
  with mesh:
    sharded = _search(queries, trie, scorer=scorer, beam=6, results=6)
  assert len(sharded.items.sharding.device_set) == 8
  np.testing.assert_array_equal(np.asarray(sharded.items), np.asarray(single.items))
  np.testing.assert_allclose(np.asarray(sharded.scores), np.asarray(single.scores),
                             rtol=1e-5, atol=1e-5)


def test_candidate_restricted_only_candidates_and_exact():
  sizes = (3, 3, 3)
  codes, offsets, vocab, seqs = _catalog(4, 60, sizes, dup_frac=0.3)
  scorer = Scorer(6, vocab, 4)
  rng = np.random.default_rng(0)
  cands = np.stack([rng.choice(60, 12, replace=False) for _ in range(4)]).astype(np.int32)
  cands[1, -3:] = -1                                   # padding
  cset = cand_lib.candidate_set(codes + offsets, cands, jnp.array([1]))
  out = _search(scorer.queries, cset, scorer=scorer, beam=12, results=12)
  for q in range(4):
    allowed = cands[q][cands[q] >= 0]
    order, s = _brute_ranking(scorer, scorer.queries[q], seqs, allowed)
    got = np.asarray(out.items[q])
    np.testing.assert_array_equal(got[got >= 0], order)
    np.testing.assert_allclose(np.asarray(out.scores[q])[got >= 0], s[order], rtol=1e-5, atol=1e-5)
    assert set(got[got >= 0]) <= set(cands[q])


def test_unconstrained_reports_invalid_ids():
  sizes = (3, 4)
  grid = np.stack(np.meshgrid(np.arange(3), np.arange(4), indexing="ij"), -1).reshape(-1, 2)
  offsets = np.array([3, 6])
  vocab = 12
  scorer = Scorer(7, vocab, 4)
  full = trie_lib.build_trie(grid, offsets, sizes, prefix_tokens=[1])
  # over all sequences of the vocabulary, the best ones are mostly not IDs.
  out = _search(scorer.queries, full, scorer=scorer, beam=20, results=20, constrained=False)
  leaves = np.asarray(out.beam_leaves)
  seqs = np.asarray(out.sequences)
  valid = ((seqs[..., 1] >= 3) & (seqs[..., 1] < 6) & (seqs[..., 2] >= 6)
           & (seqs[..., 2] < 10))
  np.testing.assert_array_equal(leaves >= 0, valid)
  assert 0 < valid.mean() < 1
  got = np.asarray(out.items)
  exp_seqs = np.concatenate([np.ones((12, 1), int), grid + offsets], 1)
  for q in range(4):
    kept = seqs[q][valid[q]]
    assert (got[q][:len(kept)] >= 0).all() and (got[q][len(kept):] == -1).all()
    np.testing.assert_array_equal(exp_seqs[got[q][:len(kept)]], kept)


def test_no_constraint_allows_every_token():
  vocab = 7
  scorer = Scorer(9, vocab, 3)
  grid = np.stack(np.meshgrid(np.arange(vocab), np.arange(vocab), indexing="ij"),
                  -1).reshape(-1, 2)
  everything = trie_lib.build_trie(grid, [0, 0], [vocab, vocab])   # every token, every step
  free = _search(scorer.queries, None, scorer=scorer, beam=vocab, results=vocab, steps=2)
  trie = _search(scorer.queries, everything, scorer=scorer, beam=vocab, results=vocab)
  assert free.items is None and free.beam_leaves is None
  np.testing.assert_array_equal(np.asarray(free.sequences), np.asarray(trie.sequences))
  np.testing.assert_array_equal(np.asarray(free.beam_scores), np.asarray(trie.beam_scores))
  for q in range(3):   # beam >= vocab over 2 steps: the K best of all V^2 sequences
    s = scorer.brute_force(scorer.queries[q], grid)
    best = np.argsort(-s, kind="stable")[:vocab]
    np.testing.assert_array_equal(np.asarray(free.sequences[q]), grid[best])
    np.testing.assert_allclose(np.asarray(free.beam_scores[q]), s[best], rtol=1e-5, atol=1e-5)
  div = _search(scorer.queries, None, scorer=scorer, beam=4, results=4, groups=2,
                penalty=1.0, steps=2)
  for q in range(3):   # diverse: ranked by log-probability, repeated sequences dropped
    alive = np.isfinite(np.asarray(div.beam_scores[q]))
    assert len({tuple(x) for x in np.asarray(div.sequences[q])[alive]}) == alive.sum()
    assert (np.diff(np.asarray(div.beam_scores[q])[alive]) <= 0).all()
  with pytest.raises(ValueError, match="without a constraint needs num_steps"):
    _search(scorer.queries, None, scorer=scorer, beam=4, results=4)


def test_diverse_beam_search():
  sizes = (6, 6, 4)
  codes, offsets, vocab, seqs = _catalog(5, 120, sizes, prefix=(), dup_frac=0.1)
  trie = trie_lib.build_trie(codes, offsets, sizes, dense_max_mb=0)
  scorer = Scorer(8, vocab, 4, scale=3.0)
  plain = _search(scorer.queries, trie, scorer=scorer, beam=6, results=6, groups=1)
  div = _search(scorer.queries, trie, scorer=scorer, beam=6, results=6, groups=3,
                penalty=50.0)
  for q in range(4):
    s = scorer.brute_force(scorer.queries[q], seqs)
    for out in (div,):
      leaves = np.asarray(out.beam_leaves[q])
      alive = leaves >= 0
      assert len(set(leaves[alive])) == alive.sum()          # identifiers deduplicated
      bsc = np.asarray(out.beam_scores[q])[alive]
      assert (np.diff(bsc) <= 1e-6).all()                    # ranked by log-probability
      items = np.asarray(out.items[q])
      np.testing.assert_allclose(np.asarray(out.scores[q])[items >= 0], s[items[items >= 0]],
                                 rtol=1e-5, atol=1e-5)
    # with a huge penalty each group starts with a different first code.
    first = np.asarray(div.sequences[q])[np.asarray(div.beam_leaves[q]) >= 0, 0]
    assert len(set(first)) >= 3
    first_plain = np.asarray(plain.sequences[q])[:, 0]
    assert len(set(first)) >= len(set(first_plain))


def test_beam_not_multiple_of_groups():
  codes, offsets, vocab, _ = _catalog(0, 10, (3,), prefix=())
  trie = trie_lib.build_trie(codes, offsets, (3,))
  scorer = Scorer(0, vocab, 1)
  with pytest.raises(ValueError, match="not a multiple of num_groups 4"):
    _search(scorer.queries, trie, scorer=scorer, beam=6, results=6, groups=4)
