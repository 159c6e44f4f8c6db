"""Beam search with the real T5 (KV cache, cache gathers) against teacher forcing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from genret_jax.decoding import model_decode
from genret_jax.decoding import trie as trie_lib
from genret_jax.model import network

SIZES = (4, 5)
OFFSETS = (10, 14)
PREFIX = 5


@pytest.fixture(scope="module")
def model():
  cfg = network.t5_config("tiny", 30, num_encoder_layers=1, num_decoder_layers=1,
                          dropout_rate=0.0)
  module = network.Transformer(cfg)
  tokens = jnp.ones((2, 6), jnp.int32)
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), tokens, tokens, tokens,
                                              enable_dropout=False))["params"]
  # random parameters straight from numpy (no init compile), sharper than the
  # default init so that the ranking is far from uniform.
  init = np.random.default_rng(1)
  params = jax.tree.map(
      lambda s: (3 * init.normal(size=s.shape) / np.sqrt(s.shape[0]) if len(s.shape) > 1
                 else np.ones(s.shape)).astype(np.float32), nn.unbox(shapes))
  rng = np.random.default_rng(0)
  queries = rng.integers(1, 30, (8, 6)).astype(np.int32)
  queries[1, 4:] = 0                                     # padded query
  codes = np.stack([rng.integers(0, s, 25) for s in SIZES], 1).astype(np.int32)
  codes[-3:] = codes[:3]                                 # duplicate IDs
  return module, params, queries, codes


_sequence_logprobs = jax.jit(model_decode.sequence_logprobs, static_argnums=0)


def _brute(module, params, queries, codes):
  """Teacher-forced log-probability of every item for every query: [Q, N]."""
  seqs = np.concatenate([np.full((len(codes), 1), PREFIX), codes + np.array(OFFSETS)], 1)
  q, n = len(queries), len(codes)
  lp = _sequence_logprobs(
      module, params, jnp.repeat(jnp.asarray(queries), n, axis=0),
      jnp.tile(jnp.asarray(seqs, jnp.int32), (q, 1)))
  return np.asarray(lp).reshape(q, n)


def _trie(codes):
  return trie_lib.build_trie(codes, OFFSETS, SIZES, prefix_tokens=[PREFIX], dense_max_mb=0)


def test_constrained_equals_brute_force(model):
  module, params, queries, codes = model
  trie = _trie(codes)
  out = model_decode.search_jit(module, params, queries, trie, beam_size=trie.num_leaves,
                                num_results=len(codes))
  scores = _brute(module, params, queries, codes)
  for q in range(len(queries)):
    order = np.lexsort((np.arange(len(codes)), -scores[q]))
    np.testing.assert_array_equal(np.asarray(out.items[q]), order)
    np.testing.assert_allclose(np.asarray(out.scores[q]), scores[q][order], rtol=1e-4,
                               atol=1e-4)


@pytest.mark.slow
def test_mesh_and_unconstrained(model):
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from genret_jax.model import partitioning
  module, params, queries, codes = model
  trie = _trie(codes)
  kw = dict(beam_size=trie.num_leaves, num_results=len(codes))
  single = model_decode.search_jit(module, params, queries, trie, **kw)   # compiled above
  mesh = Mesh(np.array(jax.devices()).reshape(8, 1), ("data", "model"))
  with partitioning.axis_rules(mesh):
    sharded = model_decode.search_jit(
        module, params, jax.device_put(queries, NamedSharding(mesh, P("data"))), trie, **kw)
  assert len(sharded.items.sharding.device_set) == 8
  np.testing.assert_array_equal(np.asarray(sharded.items), np.asarray(single.items))
  np.testing.assert_allclose(np.asarray(sharded.scores), np.asarray(single.scores), rtol=1e-4)
  un = model_decode.search_jit(module, params, queries, trie, beam_size=4, num_results=4,
                               mode="unconstrained")
  seqs = np.asarray(un.sequences)
  assert (seqs[..., 0] == PREFIX).all()
  ids = {tuple(c) for c in codes + np.array(OFFSETS)}
  is_id = np.array([[tuple(s[1:]) in ids for s in row] for row in seqs])
  np.testing.assert_array_equal(np.asarray(un.beam_leaves) >= 0, is_id)
  assert is_id.mean() < 1          # random weights: generated IDs are often invalid
  # No constraint: every token allowed, nothing forced; as unconstrained with a
  # trie that forces nothing.
  free = model_decode.search_jit(module, params, queries, None, beam_size=4, num_results=4,
                                 mode="unconstrained", num_steps=2)
  no_prefix = trie_lib.build_trie(codes, OFFSETS, SIZES)
  un2 = model_decode.search_jit(module, params, queries, no_prefix, beam_size=4,
                                num_results=4, mode="unconstrained")
  assert free.items is None
  np.testing.assert_array_equal(np.asarray(free.sequences), np.asarray(un2.sequences))
  np.testing.assert_array_equal(np.asarray(free.beam_scores), np.asarray(un2.beam_scores))


@pytest.mark.slow
def test_evaluate_generative_both_protocols(model):
  from genret_jax.decoding import config as decoding_config
  from genret_jax.evaluation import generative, metrics
  from types import SimpleNamespace
  from genret_jax.decoding import beam as bs
  module, params, queries, codes = model
  table = SimpleNamespace(codes=codes, level_sizes=SIZES)   # what an IdTable gives
  dec, ev = decoding_config.default_config(), decoding_config.eval_config()
  dec.beam_size, dec.batch_size, dec.dense_max_mb = 5, 3, 0.0
  ev.ks, ev.protocol, ev.num_negatives, ev.best_metric = (1, 3), "both", 6, "mrr"
  targets = np.array([0, 7, 24, 11, 3, 3, 20, 1])
  cands = metrics.sample_negatives(len(codes), targets, 6, seed=0)
  res = generative.evaluate_generative(module, params, queries, targets, table, OFFSETS,
                                       prefix_tokens=[PREFIX], decode_config=dec,
                                       eval_config=ev, candidates=cands)
  full = generative.generate_items(module, params, queries, lambda lo, hi, pad: _trie(codes),
                                   decode_config=dec, num_results=3)
  expect = metrics.ranking_metrics(full["items"], targets, (1, 3), full["ranks"])
  for k, v in expect.items():
    assert res[k] == pytest.approx(v, rel=1e-5)
  # sampled: brute-force ranking of the 7 candidates by sequence log-probability.
  scores = _brute(module, params, queries, codes)
  items = np.full((8, 7), -1)
  ranks = np.full((8, 7), -1)
  for q in range(8):
    c = np.sort(cands[q])
    order = c[np.lexsort((c, -scores[q][c]))]
    items[q] = order
    _, ranks[q] = np.unique(np.round(scores[q][order], 4), return_inverse=True)
    ranks[q] = ranks[q].max() - ranks[q]
  items_b = generative.generate_items(
      module, params, queries,
      lambda lo, hi, pad: generative._candidate_set(
          codes + np.array(OFFSETS, np.int32),
          np.concatenate([cands[lo:hi], np.repeat(cands[hi - 1:hi], pad, 0)]),
          np.array([PREFIX])),
      decode_config=dec, num_results=3)["items"]
  np.testing.assert_array_equal(items_b[:, :3], items[:, :3])   # beam 5 keeps the top 3 here
  expect = metrics.ranking_metrics(items[:, :3], targets, (1, 3), ranks[:, :3])
  for k, v in expect.items():
    assert res["sampled_" + k] == pytest.approx(v, rel=1e-5)
  assert res["invalid_id_rate"] == 0.0 and res["num_queries"] == 8.0
  # An injected decode function (T5X's decode_fn) is the one that runs.
  calls = []

  def spy(tokens_to_logits, cache, constraint, **kwargs):
    calls.append(kwargs)
    return bs.beam_search(tokens_to_logits, cache, constraint, **kwargs)
  ev.protocol = "full"
  spied = generative.evaluate_generative(module, params, queries, targets, table, OFFSETS,
                                         prefix_tokens=[PREFIX], decode_config=dec,
                                         eval_config=ev, decode_fn=spy)
  assert calls and calls[0]["beam_size"] == 5 and calls[0]["batch_size"] == 3
  assert spied == {k: v for k, v in res.items() if not k.startswith("sampled_")}
  with pytest.raises(ValueError, match="must be \\[N, S\\]"):
    generative.evaluate_generative(module, params, queries, targets[:2], table, OFFSETS)
  ev.protocol = "sampled"
  with pytest.raises(ValueError, match="one row per query"):
    generative.evaluate_generative(module, params, queries, targets, table, OFFSETS,
                                   eval_config=ev, candidates=cands[:2])
