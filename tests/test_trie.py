"""Trie tables: dense and CSR layouts agree, lookups, the leaf -> items map, errors."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genret_jax.decoding import trie as trie_lib
from genret_jax.ids.types import atomic_ids


def _catalog(seed, n=60, sizes=(3, 4, 5)):
  rng = np.random.default_rng(seed)
  codes = np.stack([rng.integers(0, s, n) for s in sizes], 1).astype(np.int32)
  offsets = np.concatenate([[7], 7 + np.cumsum(sizes)[:-1]]).astype(np.int32)
  return codes, offsets, sizes


def test_structure_on_hand_example():
  codes = np.array([[1, 0], [0, 2], [1, 0], [1, 1]])
  t = trie_lib.build_trie(codes, [10, 20], [2, 3], dense_max_mb=np.inf)
  np.testing.assert_array_equal(t.levels[0].next, [[0, 1]])
  np.testing.assert_array_equal(t.levels[1].next, [[-1, -1, 0], [1, 2, -1]])
  np.testing.assert_array_equal(t.leaf_start, [0, 1, 3, 4])
  np.testing.assert_array_equal(t.leaf_items, [1, 0, 2, 3])    # leaf (1,0) -> items 0, 2
  assert t.max_dup == 2
  c = trie_lib.build_trie(codes, [10, 20], [2, 3], dense_max_mb=0)
  np.testing.assert_array_equal(c.levels[1].row_ptr, [0, 1, 3])
  np.testing.assert_array_equal(c.levels[1].codes, [2, 0, 1])
  assert [lv.width for lv in c.levels] == [2, 2]


@pytest.mark.parametrize("dense_max_mb", [0.0, np.inf, 2e-4])
def test_lookup_every_item_and_reject_others(dense_max_mb):
  codes, offsets, sizes = _catalog(0)
  t = trie_lib.build_trie(codes, offsets, sizes, prefix_tokens=[3], dense_max_mb=dense_max_mb)
  kinds = {type(lv).__name__ for lv in t.levels}
  assert kinds == ({"CsrLevel"} if dense_max_mb == 0 else {"DenseLevel"}
                   if dense_max_mb == np.inf else {"DenseLevel", "CsrLevel"})
  seqs = np.concatenate([np.full((len(codes), 1), 3), codes + offsets], 1)
  leaves = np.asarray(jax.jit(trie_lib.lookup)(t, jnp.asarray(seqs)[None]))[0]
  items, valid = jax.jit(lambda t, f: t.items(f))(t, jnp.asarray(leaves)[None])
  items = np.asarray(items)[0]
  for i in range(len(codes)):
    assert i in items[i][np.asarray(valid)[0, i]]
    same = np.flatnonzero((codes == codes[i]).all(1))
    np.testing.assert_array_equal(np.sort(items[i][items[i] >= 0]), same)
  # all possible sequences: exactly the catalog's IDs are found.
  grid = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1).reshape(-1, 3)
  seqs = np.concatenate([np.full((len(grid), 1), 3), grid + offsets], 1)
  found = np.asarray(trie_lib.lookup(t, jnp.asarray(seqs)[None]))[0] >= 0
  member = (grid[:, None, :] == codes[None]).all(-1).any(1)
  np.testing.assert_array_equal(found, member)
  wrong_prefix = seqs.copy()
  wrong_prefix[:, 0] = 4
  assert (np.asarray(trie_lib.lookup(t, jnp.asarray(wrong_prefix)[None])) == -1).all()
  off_range = seqs.copy()
  off_range[:, 2] = offsets[2]   # a level-2 token at level 1
  assert (np.asarray(trie_lib.lookup(t, jnp.asarray(off_range)[None])) == -1).all()


def test_atomic_table_and_memory():
  ids = atomic_ids(1000)
  t = trie_lib.trie_from_id_table(ids.rec, [5])
  assert t.num_leaves == 1000 and t.max_dup == 1
  np.testing.assert_array_equal(t.levels[0].next[0], np.arange(1000))
  assert t.nbytes == 4 * (1000 + 1001 + 1000)
  # only codes and level_sizes are read: no IdTable (name, token prefixes) needed.
  bare = trie_lib.trie_from_id_table(SimpleNamespace(codes=ids.rec.codes, level_sizes=(1000,)),
                                     [5])
  np.testing.assert_array_equal(bare.levels[0].next, t.levels[0].next)


def test_build_is_fast_and_small_for_1m_items():
  import time
  rng = np.random.default_rng(0)
  codes = rng.integers(0, 256, (1_000_000, 4), dtype=np.int32)
  t0 = time.perf_counter()
  t = trie_lib.build_trie(codes, [0, 256, 512, 768], [256] * 4)
  seconds = time.perf_counter() - t0
  assert seconds < 5.0
  assert t.nbytes / 2**20 < 100
  assert [type(lv).__name__ for lv in t.levels] == ["DenseLevel", "DenseLevel",
                                                     "CsrLevel", "CsrLevel"]


def test_errors():
  codes, offsets, sizes = _catalog(1)
  with pytest.raises(ValueError, match="non-empty"):
    trie_lib.build_trie(np.zeros((0, 3), np.int32), offsets, sizes)
  with pytest.raises(ValueError, match="non-empty"):
    trie_lib.build_trie(np.zeros(4, np.int32), offsets, sizes)
  with pytest.raises(ValueError, match="3 ID levels but 2 level_offsets"):
    trie_lib.build_trie(codes, offsets[:2], sizes)
  bad = codes.copy()
  bad[5, 1] = sizes[1]
  with pytest.raises(ValueError, match="item 5 level 1 code 4 is outside"):
    trie_lib.build_trie(bad, offsets, sizes)
  with pytest.raises(ValueError, match="csr_widths has 1"):
    trie_lib.build_trie(codes, offsets, sizes, csr_widths=[3])
  with pytest.raises(ValueError, match="below the level's max branching"):
    trie_lib.build_trie(codes, offsets, sizes, dense_max_mb=0, csr_widths=[1, 1, 1])
