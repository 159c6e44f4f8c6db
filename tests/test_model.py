"""The T5 network: config sizes, padding masks, packing, dropout, KV cache, dtype."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import linen as nn

from genret_jax.model import attention, layers, network

VOCAB = 200


B, S, T = 2, 10, 7  # one set of shapes, so each jitted function compiles once


def _model(**overrides):
  cfg = network.t5_config("tiny", VOCAB, **{"dropout_rate": 0.2, **overrides})
  return network.Transformer(cfg), cfg


def _abstract_params(model, enc, dec_in, targets):
  """Boxed ShapeDtypeStructs of the params (nothing is computed or compiled)."""
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), enc, dec_in, targets,
                                           enable_dropout=False))["params"]


def _init(model, enc, dec_in, targets, seed=0):
  """Random parameters of the right tree and shapes, drawn with numpy.

  (Compiling `model.init` costs many seconds on CPU, so the behavioural tests
  here draw parameters directly; test_partitioning compiles the real init.)
  """
  rng = np.random.default_rng(seed)
  shapes = nn.unbox(_abstract_params(model, enc, dec_in, targets))

  def draw(s):
    if len(s.shape) == 1:  # layer-norm scales around 1
      return (1.0 + 0.1 * rng.standard_normal(s.shape)).astype(np.float32)
    return (0.3 * rng.standard_normal(s.shape)).astype(np.float32)
  return jax.tree_util.tree_map(draw, shapes)


def _shift_right(targets):
  return np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)


def _batch(rng, batch=B, enc_len=S, dec_len=T):
  enc = rng.integers(2, VOCAB, size=(batch, enc_len)).astype(np.int32)
  targets = rng.integers(2, VOCAB, size=(batch, dec_len)).astype(np.int32)
  return enc, _shift_right(targets), targets


def test_sizes_and_vocab_padding():
  assert network.pad_vocab_size(1) == 128
  assert network.pad_vocab_size(128) == 128
  assert network.pad_vocab_size(32100 + 12101) == 44288
  small = network.t5_config("small", 32100)
  assert (small.vocab_size, small.emb_dim, small.num_heads, small.head_dim, small.mlp_dim,
          small.num_encoder_layers) == (32128, 512, 6, 64, 1024, 8)
  base = network.t5_config("base", 32128)
  assert (base.emb_dim, base.num_heads, base.mlp_dim, base.num_decoder_layers) == \
      (768, 12, 2048, 12)
  large = network.t5_config("large", 32128, dtype=jnp.bfloat16)
  assert (large.emb_dim, large.num_heads, large.mlp_dim, large.num_encoder_layers) == \
      (1024, 16, 2816, 24)
  assert large.dtype == jnp.bfloat16
  assert base.mlp_activations == ("gelu", "linear") and not base.logits_via_embedding
  with pytest.raises(ValueError, match="unknown model size 'xl'"):
    network.t5_config("xl", 10)
  with pytest.raises(ValueError, match=r"unknown T5Config fields \['emb'\]"):
    network.t5_config("tiny", 10, emb=3)
  # every dimension given: no size name needed.
  tiny_dims = {f: getattr(network.t5_config("tiny", 10), f) for f in network.DIM_FIELDS}
  assert network.t5_config(None, 10, **tiny_dims) == network.t5_config("tiny", 10)
  with pytest.raises(ValueError, match=r"without a size needs every dimension; missing "
                                       r"\['mlp_dim'\]"):
    network.t5_config(None, 10, **{k: v for k, v in tiny_dims.items() if k != "mlp_dim"})
  with pytest.raises(ValueError, match="vocab_size must be positive"):
    network.pad_vocab_size(0)


def test_parameter_shapes_and_logical_names():
  model, cfg = _model()
  enc, dec_in, targets = _batch(np.random.default_rng(0))
  boxed = _abstract_params(model, enc, dec_in, targets)
  leaves = jax.tree_util.tree_leaves_with_path(
      boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  names = {}
  for path, leaf in leaves:
    assert isinstance(leaf, nn.LogicallyPartitioned), jax.tree_util.keystr(path)
    assert len(leaf.names) == len(leaf.value.shape)
    assert leaf.value.dtype == jnp.float32
    names[jax.tree_util.keystr(path, simple=True, separator="/")] = leaf.names
  assert names["token_embedder/embedding"] == ("vocab", "embed")
  assert names["encoder/layers_0/attention/query/kernel"] == ("embed", "heads", "kv")
  assert names["encoder/layers_0/attention/out/kernel"] == ("heads", "kv", "embed")
  assert names["decoder/layers_1/mlp/wi_1/kernel"] == ("embed", "mlp")
  assert names["decoder/layers_1/mlp/wo/kernel"] == ("mlp", "embed")
  assert names["decoder/relpos_bias/rel_embedding"] == ("heads", "relpos_buckets")
  assert names["decoder/decoder_norm/scale"] == ("embed",)
  assert names["decoder/logits_dense/kernel"] == ("embed", "vocab")
  params = nn.unbox(boxed)
  assert params["token_embedder"]["embedding"].shape == (128 * 2, cfg.emb_dim)
  assert params["decoder"]["logits_dense"]["kernel"].shape == (cfg.emb_dim, 256)
  # The tied head has no separate output kernel.
  tied, _ = _model(logits_via_embedding=True)
  assert "logits_dense" not in _init(tied, enc, dec_in, targets)["decoder"]


def test_relative_position_buckets():
  rel = jnp.arange(-200, 201)
  causal = np.asarray(layers.relative_position_bucket(rel, False, 32, 128))
  np.testing.assert_array_equal(causal[rel > 0], 0)  # the future is one bucket (masked anyway)
  np.testing.assert_array_equal(causal[(rel <= 0) & (rel > -16)], -np.asarray(rel)[
      (rel <= 0) & (rel > -16)])
  assert causal[list(rel).index(-128)] == 31 and causal[0] == 31
  bi = np.asarray(layers.relative_position_bucket(rel, True, 32, 128))
  assert bi[list(rel).index(3)] == 16 + 3 and bi[list(rel).index(-3)] == 3
  assert bi.max() == 31 and bi.min() == 0
  assert np.all(np.diff(bi[rel >= 0]) >= 0)  # monotone in distance


class _Tiny:
  """The tiny model, random params and jitted forward functions shared by tests."""

  def __init__(self):
    self.model, self.cfg = _model()
    self.params = _init(self.model, *_batch(np.random.default_rng(0)))
    model = self.model
    self.forward = jax.jit(lambda p, e, d, t: model.apply(
        {"params": p}, e, d, t, enable_dropout=False))
    self.packed = jax.jit(lambda p, e, d, t, es, ds: model.apply(
        {"params": p}, e, d, t, es, ds, enable_dropout=False))
    self.encode = jax.jit(lambda p, e: model.apply({"params": p}, e, enable_dropout=False,
                                                   method=model.encode))

  def __call__(self, enc, dec_in, targets):
    return np.asarray(self.forward(self.params, enc, dec_in, targets))


@pytest.fixture(scope="module")
def tiny():
  return _Tiny()


def test_encoder_padding_is_masked(tiny):
  enc, dec_in, targets = _batch(np.random.default_rng(1))
  enc[0, 6:] = 0
  enc[1, 3:] = 0
  base = tiny(enc, dec_in, targets)
  # Whatever the encoder computes at padded positions, no real position sees it:
  # logits equal those of the same inputs with different real tokens moved...
  encoded = np.asarray(tiny.encode(tiny.params, enc))
  # ...and the encoder states of real tokens equal those of the unpadded sequence
  # (the padded tail is replaced by other real tokens masked out via segment 0).
  other = enc.copy()
  other[0, 6:] = 77
  other[1, 3:] = 55
  seg = (enc > 0).astype(np.int32)
  dseg = np.ones((B, T), np.int32)
  masked_by_segment = np.asarray(tiny.packed(tiny.params, other, dec_in, targets, seg, dseg))
  np.testing.assert_allclose(masked_by_segment, base, atol=1e-4, rtol=1e-4)
  assert np.abs(tiny(other, dec_in, targets) - base).max() > 1e-3  # the tokens do matter
  np.testing.assert_array_equal(np.isfinite(encoded), True)


def test_encoder_outputs_do_not_depend_on_padding_length(tiny):
  enc, dec_in, targets = _batch(np.random.default_rng(2))
  enc[:, 6:] = 0
  shifted = np.zeros_like(enc)
  shifted[:, :6] = enc[:, :6]
  shifted_logits = tiny(shifted, dec_in, targets)
  np.testing.assert_array_equal(shifted_logits, tiny(enc, dec_in, targets))
  # A padded position's content is 0 by definition; a real token there changes things.
  changed = enc.copy()
  changed[:, 6] = 9
  assert np.abs(tiny(changed, dec_in, targets) - shifted_logits).max() > 1e-3


def test_decoder_is_causal_and_padding_is_masked(tiny):
  enc, dec_in, targets = _batch(np.random.default_rng(3))
  base = tiny(enc, dec_in, targets)
  # Changing a later decoder input leaves earlier logits unchanged.
  changed = dec_in.copy()
  changed[:, 3] = (changed[:, 3] + 7) % VOCAB + 1
  out = tiny(enc, changed, targets)
  np.testing.assert_allclose(out[:, :3], base[:, :3], rtol=1e-5, atol=1e-5)
  assert np.abs(out[:, 3:] - base[:, 3:]).max() > 1e-3
  # Padded target positions (target 0): their input tokens are invisible.
  padded_t = targets.copy()
  padded_t[:, 4:] = 0
  padded_in = dec_in.copy()
  padded_in[:, 5:] = 123
  out = tiny(enc, padded_in, padded_t)
  ref = tiny(enc, dec_in, padded_t)
  np.testing.assert_allclose(out[:, :4], ref[:, :4], rtol=1e-5, atol=1e-5)


def test_packing_equals_separate_sequences_in_logits_and_gradients(tiny):
  """Two examples packed in one row (segment ids only: the relative bias is
  computed from row offsets, which equal in-segment offsets wherever the
  segment mask lets attend) give the logits and the parameter gradient of the
  same examples in separate rows."""
  rng = np.random.default_rng(4)
  a = _batch(rng, batch=1, enc_len=5, dec_len=3)
  b = _batch(rng, batch=1, enc_len=4, dec_len=4)
  pad = lambda x, n: np.pad(x, ((0, 0), (0, n - x.shape[1])))  # noqa: E731
  # Reference: a and b as two separate (padded) rows of one batch.
  sep = [np.concatenate([pad(a[i], n), pad(b[i], n)]) for i, n in ((0, S), (1, T), (2, T))]
  separate = tiny(*sep)
  # Packed: a then b in row 0 (b starts at encoder offset 5, decoder offset 3);
  # row 1 is b alone.
  enc = np.concatenate([pad(np.concatenate([a[0], b[0]], 1), S), pad(b[0], S)])
  dec_in = np.concatenate([np.concatenate([a[1], b[1]], 1), pad(b[1], T)])
  targets = np.concatenate([np.concatenate([a[2], b[2]], 1), pad(b[2], T)])
  enc_seg = np.array([[1] * 5 + [2] * 4 + [0], [1] * 4 + [0] * 6], np.int32)
  dec_seg = np.array([[1] * 3 + [2] * 4, [1] * 4 + [0] * 3], np.int32)
  packed = np.asarray(tiny.packed(tiny.params, enc, dec_in, targets, enc_seg, dec_seg))
  np.testing.assert_allclose(packed[0, :3], separate[0, :3], atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(packed[0, 3:7], separate[1, :4], atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(packed[1, :4], separate[1, :4], atol=1e-4, rtol=1e-4)

  # The same loss (a's targets once, b's twice) has the same gradient, the
  # relative-bias tables included.
  model = tiny.model

  def nll(logits, tgt, weight):
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.take_along_axis(logp, tgt[..., None], -1)[..., 0] * weight)

  def packed_loss(p):
    logits = model.apply({"params": p}, enc, dec_in, targets, enc_seg, dec_seg,
                         enable_dropout=False)
    return nll(logits, targets, (targets > 0).astype(jnp.float32))

  def separate_loss(p):
    logits = model.apply({"params": p}, *sep, enable_dropout=False)
    return nll(logits, sep[2], np.array([[1.0] * T, [2.0] * T]) * (sep[2] > 0))

  grads = [jax.grad(f)(tiny.params) for f in (packed_loss, separate_loss)]
  flat = [dict(jax.tree_util.tree_leaves_with_path(g)) for g in grads]
  assert any("relpos_bias" in jax.tree_util.keystr(k) for k in flat[0])
  for path, g in flat[0].items():
    np.testing.assert_allclose(g, flat[1][path], atol=1e-4, rtol=5e-4,
                               err_msg=jax.tree_util.keystr(path))


def test_cached_decoding_equals_teacher_forcing(tiny):
  model, params = tiny.model, tiny.params
  enc, dec_in, targets = _batch(np.random.default_rng(5))
  enc[1, 5:] = 0
  full = tiny(enc, dec_in, targets)
  encoded = tiny.encode(params, enc)
  cache = network.init_cache(model, B, T, S)
  leaves = jax.tree_util.tree_leaves_with_path(cache)
  assert {jax.tree_util.keystr(p[-1:]) for p, _ in leaves} == \
      {"['cache_index']", "['cached_key']", "['cached_value']"}
  layer0 = cache["decoder"]["layers_0"]["self_attention"]
  assert layer0["cached_key"].shape == (B, 4, T, 8) and layer0["cache_index"].shape == ()
  assert all(np.all(np.asarray(x) == 0) for _, x in leaves)

  def step(cache, token):
    logits, mutated = model.apply({"params": params, "cache": cache}, encoded, enc, token, token,
                                  enable_dropout=False, decode=True, mutable=["cache"],
                                  method=model.decode)
    return mutated["cache"], logits[:, 0]

  # The whole loop is one jitted scan: no host round trip per token.
  scan = jax.jit(lambda c, toks: jax.lax.scan(step, c, toks))
  final, stepped = scan(cache, jnp.transpose(dec_in)[:, :, None])
  np.testing.assert_allclose(np.transpose(np.asarray(stepped), (1, 0, 2)), full, rtol=1e-5, atol=1e-5)
  assert int(final["decoder"]["layers_1"]["self_attention"]["cache_index"]) == T

  # With params, the cache also holds the projected encoder keys/values.
  filled = network.init_cache(model, B, T, S, params=params, encoded=encoded,
                              encoder_input_tokens=enc)
  cross = filled["decoder"]["layers_0"]["encoder_decoder_attention"]
  assert cross["projected_key"].shape == (B, 4, S, 8)  # heads-major
  kernel = params["decoder"]["layers_0"]["encoder_decoder_attention"]["key"]["kernel"]
  np.testing.assert_allclose(np.asarray(cross["projected_key"]),
                             np.einsum("bse,ehd->bhsd", np.asarray(encoded), kernel),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(
      np.asarray(filled["decoder"]["layers_1"]["self_attention"]["cached_key"]), 0)
  final, stepped = scan(filled, jnp.transpose(dec_in)[:, :, None])
  np.testing.assert_allclose(np.transpose(np.asarray(stepped), (1, 0, 2)), full, rtol=1e-5, atol=1e-5)
  assert jax.tree_util.tree_structure(final) == jax.tree_util.tree_structure(filled)
  with pytest.raises(ValueError, match="also needs encoded"):
    network.init_cache(model, B, T, S, params=params)
  with pytest.raises(ValueError, match="one token per call"):
    model.apply({"params": params, "cache": cache}, encoded, enc, dec_in[:, :2], dec_in[:, :2],
                enable_dropout=False, decode=True, mutable=["cache"], method=model.decode)


def test_beams_share_projected_cross_kv(tiny):
  """init_cache(beams=K): K decoder rows per query read one copy of its cross K/V
  and give the same logits as K repeated encoder rows."""
  model, params = tiny.model, tiny.params
  enc, dec_in, targets = _batch(np.random.default_rng(7))
  enc[1, 4:] = 0
  k = 3
  encoded = tiny.encode(params, enc)
  shared = network.init_cache(model, B * k, T, S, params=params, encoded=encoded,
                              encoder_input_tokens=enc, beams=k)
  cross = shared["decoder"]["layers_0"]["encoder_decoder_attention"]
  assert cross["projected_key"].shape == (B, 4, S, 8)   # once per query, not per beam
  assert shared["decoder"]["layers_0"]["self_attention"]["cached_key"].shape == (B * k, 4, T, 8)
  rep_enc, rep_encoded = np.repeat(enc, k, axis=0), jnp.repeat(encoded, k, axis=0)
  repeated = network.init_cache(model, B * k, T, S, params=params, encoded=rep_encoded,
                                encoder_input_tokens=rep_enc)
  rng = np.random.default_rng(8)
  tokens = rng.integers(1, 50, size=(T, B * k, 1)).astype(np.int32)  # beams diverge

  def run(cache, encoded, enc):
    def step(cache, token):
      logits, mutated = model.apply({"params": params, "cache": cache}, encoded, enc, token,
                                    token, enable_dropout=False, decode=True,
                                    mutable=["cache"], method=model.decode)
      return mutated["cache"], logits[:, 0]
    return jax.lax.scan(step, cache, tokens)[1]

  got = jax.jit(run)(shared, encoded, enc)
  want = jax.jit(run)(repeated, rep_encoded, rep_enc)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="not a multiple of beams"):
    network.init_cache(model, B * k + 1, T, S, params=params, encoded=encoded,
                       encoder_input_tokens=enc, beams=k)


def test_beam_gather_reorders_cached_sequences(tiny):
  from genret_jax.decoding import beam as bs
  model, params = tiny.model, tiny.params
  enc, dec_in, _ = _batch(np.random.default_rng(10))
  enc[1] = enc[0]  # same query for both rows: one query with two beams
  encoded = tiny.encode(params, enc)

  @jax.jit
  def run(cache, tokens):  # tokens [2, n]: n cached steps -> last logits
    def step(cache, token):
      logits, mutated = model.apply({"params": params, "cache": cache}, encoded, enc,
                                    token[:, None], token[:, None], enable_dropout=False,
                                    decode=True, mutable=["cache"], method=model.decode)
      return mutated["cache"], logits[:, 0]
    cache, logits = jax.lax.scan(step, cache, jnp.transpose(tokens))
    return cache, logits[-1]

  prefix, last = dec_in[:, :4], dec_in[:, 4:5]
  cache, _ = run(network.init_cache(model, B, T, S), prefix)
  for order in ([1, 0], [1, 1]):  # swap the beams; one beam taking both places
    origin = jnp.asarray([order], jnp.int32)               # [queries 1, beams 2]
    moved = jax.tree_util.tree_map(lambda x, o=origin: bs.gather_beams(x, o, 1, B), cache)
    _, got = run(moved, last[order])
    full_cache, _ = run(network.init_cache(model, B, T, S), prefix[order])
    _, want = run(full_cache, last[order])
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bits", [16, 32])
def test_dropout_is_active_only_when_enabled(bits):
  # Through the encoder of a one-layer model: dropout's RNG code is slow to
  # compile on CPU, and the decoder uses the same dropout modules.
  model, _ = _model(num_encoder_layers=1, num_decoder_layers=1, dropout_rate=0.2,
                    attention_dropout_bits=bits)
  enc, dec_in, targets = _batch(np.random.default_rng(6))
  params = _init(model, enc, dec_in, targets)
  run = jax.jit(lambda key, on: model.apply({"params": params}, enc, enable_dropout=on,
                                            rngs={"dropout": key}, method=model.encode),
                static_argnums=1)
  k1, k2 = jax.random.split(jax.random.PRNGKey(9))
  off = np.asarray(run(k1, False))
  np.testing.assert_array_equal(off, np.asarray(run(k2, False)))
  on1 = np.asarray(run(k1, True))
  np.testing.assert_array_equal(on1, np.asarray(run(k1, True)))
  assert np.abs(on1 - np.asarray(run(k2, True))).max() > 1e-3
  assert np.abs(on1 - off).max() > 1e-3


@pytest.mark.parametrize("shape", [(8, 4, 64, 128), (3, 2, 33, 7)])
def test_dropout_keep_mask_rate_and_independence(shape):
  mask = jax.jit(attention.dropout_keep_mask, static_argnums=(1, 2))
  key = jax.random.PRNGKey(3)
  keep = np.asarray(mask(key, 0.1, shape))
  assert keep.shape == shape and keep.dtype == bool
  n = keep.size
  # Bernoulli(0.9 + 2^-17 rounding): within 5 standard deviations.
  assert abs(keep.mean() - (1 - 6554 / 65536)) < 5 * np.sqrt(0.09 / n)
  # The two 16-bit halves of one 32-bit draw (side by side on the last axis)
  # are independent: P(both kept) = P(kept)^2.
  half = (shape[-1] + 1) // 2
  lo, hi = keep[..., :shape[-1] - half], keep[..., half:]
  assert abs((lo & hi).mean() - lo.mean() * hi.mean()) < 5 * np.sqrt(0.09 / lo.size)
  np.testing.assert_array_equal(keep, np.asarray(mask(key, 0.1, shape)))
  assert (keep != np.asarray(mask(jax.random.PRNGKey(4), 0.1, shape))).any()
  assert np.asarray(mask(key, 0.0, shape)).all()
  assert not np.asarray(mask(key, 1.0, shape)).any()


def test_bfloat16_activations_keep_float32_params_and_logits(tiny):
  model16, _ = _model(dtype=jnp.bfloat16)
  enc, dec_in, targets = _batch(np.random.default_rng(7))
  params = jax.tree_util.tree_map(lambda x: x * 0.5 if x.ndim > 1 else x, tiny.params)
  out16, encoded = jax.jit(lambda p: (
      model16.apply({"params": p}, enc, dec_in, targets, enable_dropout=False),
      model16.apply({"params": p}, enc, enable_dropout=False, method=model16.encode)))(params)
  assert out16.dtype == jnp.float32 and encoded.dtype == jnp.bfloat16
  out32 = tiny(enc, dec_in, targets) if params is tiny.params else np.asarray(
      tiny.forward(params, enc, dec_in, targets))
  # bfloat16 keeps ~3 significant digits: close to float32, not equal.
  scale = np.abs(out32).max()
  err = np.abs(np.asarray(out16) - out32)
  assert 0 < err.max() < 0.05 * scale
  assert np.mean(np.argmax(np.asarray(out16), -1) == np.argmax(out32, -1)) >= 0.9


def test_tied_head_scales_by_inverse_sqrt_dim():
  model, cfg = _model(logits_via_embedding=True, dropout_rate=0.0)
  enc, dec_in, targets = _batch(np.random.default_rng(8))
  params = _init(model, enc, dec_in, targets)

  @jax.jit
  def run(params):
    return model.apply({"params": params}, enc, dec_in, targets, enable_dropout=False,
                       capture_intermediates=lambda mdl, _: mdl.name == "decoder_norm",
                       mutable=["intermediates"])
  logits, state = run(params)
  hidden = state["intermediates"]["decoder"]["decoder_norm"]["__call__"][0]
  expected = hidden @ params["token_embedder"]["embedding"].T / np.sqrt(cfg.emb_dim)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_config_block_builds_the_network_config():
  from genret_jax.errors import ConfigError
  from genret_jax.model import builder
  from genret_jax.model import config as model_config
  block = model_config.default_config()
  cfg = builder.t5_config_from_block(block, 1000)
  assert cfg == network.t5_config("tiny", 1000, dropout_rate=0.0)
  assert cfg.attention_dropout_bits == 16
  block.size, block.dtype, block.logits_via_embedding = "small", "bfloat16", True
  cfg = builder.t5_config_from_block(block, 1000)
  assert (cfg.emb_dim, cfg.dtype, cfg.logits_via_embedding, cfg.vocab_size) == \
      (512, jnp.bfloat16, True, 1024)
  block = model_config.default_config()
  block.update(size="", **TINY_DIMS)                # '' with every dimension key set
  assert builder.t5_config_from_block(block, 1000) == network.t5_config("tiny", 1000,
                                                                        dropout_rate=0.0)
  block.mlp_dim = 0
  with pytest.raises(ConfigError, match="config.model.size: '' needs every dimension key set "
                                        r"\(> 0\); model.mlp_dim missing"):
    builder.t5_config_from_block(block, 1000)
  for key, value, message in [("size", "xl", "'xl' is not one of tiny, small, base, large"),
                              ("dtype", "float16", "'float16' is not one of"),
                              ("dropout_rate", 1.0, r"must be in \[0, 1\), got 1.0"),
                              ("attention_dropout_bits", 8, "must be 16 or 32, got 8")]:
    bad = model_config.default_config()
    bad[key] = value
    with pytest.raises(ConfigError, match=f"config.model.{key}: {message}"):
      builder.t5_config_from_block(bad, 1000)


def _expected_shapes(vocab_rows: int, emb_dim: int, num_heads: int, head_dim: int, mlp_dim: int,
                     num_encoder_layers: int, num_decoder_layers: int) -> dict[str, tuple]:
  """Every parameter's shape of an untied T5 v1.1 with these dims, written out by hand."""
  e, h, d, m = emb_dim, num_heads, head_dim, mlp_dim
  attn_shapes = {"key/kernel": (e, h, d), "value/kernel": (e, h, d), "query/kernel": (e, h, d),
                 "out/kernel": (h, d, e)}
  mlp_shapes = {"mlp/wi_0/kernel": (e, m), "mlp/wi_1/kernel": (e, m), "mlp/wo/kernel": (m, e)}
  out = {"token_embedder/embedding": (vocab_rows, e), "encoder/encoder_norm/scale": (e,),
         "encoder/relpos_bias/rel_embedding": (h, 32), "decoder/decoder_norm/scale": (e,),
         "decoder/relpos_bias/rel_embedding": (h, 32),
         "decoder/logits_dense/kernel": (e, vocab_rows)}
  for i in range(num_encoder_layers):
    pre = f"encoder/layers_{i}/"
    out.update({pre + "attention/" + k: v for k, v in attn_shapes.items()})
    out.update({pre + k: v for k, v in mlp_shapes.items()})
    out.update({pre + f"pre_{n}_layer_norm/scale": (e,) for n in ("attention", "mlp")})
  for i in range(num_decoder_layers):
    pre = f"decoder/layers_{i}/"
    for block in ("self_attention", "encoder_decoder_attention"):
      out.update({f"{pre}{block}/{k}": v for k, v in attn_shapes.items()})
    out.update({pre + k: v for k, v in mlp_shapes.items()})
    out.update({pre + f"pre_{n}_layer_norm/scale": (e,)
                for n in ("self_attention", "cross_attention", "mlp")})
  return out


def _param_shapes(cfg) -> dict[str, tuple]:
  model = network.Transformer(cfg)
  enc, dec_in, targets = _batch(np.random.default_rng(0))
  params = nn.unbox(_abstract_params(model, enc, dec_in, targets))
  return {jax.tree_util.keystr(p, simple=True, separator="/"): tuple(leaf.shape)
          for p, leaf in jax.tree_util.tree_leaves_with_path(params)}


TINY_DIMS = dict(emb_dim=32, num_heads=4, head_dim=8, mlp_dim=64, num_encoder_layers=2,
                 num_decoder_layers=2)


@pytest.mark.parametrize("overrides", [
    {}, {"num_encoder_layers": 3}, {"num_decoder_layers": 1}, {"emb_dim": 48}, {"num_heads": 3},
    {"head_dim": 16}, {"mlp_dim": 80},
    # TIGER (Rajput et al. 2023): 4 + 4 layers, d_model 128, 6 heads x 64, MLP 1024.
    {"num_encoder_layers": 4, "num_decoder_layers": 4, "emb_dim": 128, "num_heads": 6,
     "head_dim": 64, "mlp_dim": 1024}])
def test_dimension_keys_override_the_size_exactly(overrides):
  from genret_jax.model import builder
  from genret_jax.model import config as model_config
  block = model_config.default_config()
  assert all(block[k] == 0 for k in model_config.DIM_KEYS)     # 0 = the size's value
  for key, value in overrides.items():
    block[key] = value
  cfg = builder.t5_config_from_block(block, VOCAB)
  dims = {**TINY_DIMS, **overrides}
  assert {k: getattr(cfg, k) for k in dims} == dims
  assert cfg == network.t5_config("tiny", VOCAB, dropout_rate=0.0, **overrides)
  assert _param_shapes(cfg) == _expected_shapes(256, **dims)


def test_bad_dimension_keys_name_the_key(tmp_path):
  from genret_jax.errors import ConfigError
  from genret_jax.model import builder
  from genret_jax.model import config as model_config
  for key in model_config.DIM_KEYS:
    for value in (-1, 1.5, True, "8"):
      # type_safe=False: a locked-type ConfigDict would refuse 1.5 / True / "8" itself.
      bad = ml_collections.ConfigDict(model_config.default_config().to_dict(), type_safe=False)
      bad[key] = value
      with pytest.raises(ConfigError, match=rf"config.model.{key}: must be an integer >= 0 "
                                            rf"\(0 = the size's value\), got {value!r}"):
        builder.t5_config_from_block(bad, VOCAB)
  # A checkpoint fixes the dimensions: setting one as well is an error, not ignored.
  block = model_config.default_config()
  block.hf_checkpoint, block.emb_dim = str(tmp_path), 64
  with pytest.raises(ConfigError, match="config.model.emb_dim: is 64 but model.hf_checkpoint"):
    builder.load_pretrained(block, VOCAB)


@pytest.mark.parametrize("spec, lhs_shape, rhs_shape", [
    ("abc,cd->abd", (4, 5, 8), (8, 6)),             # DenseGeneral, axis=-1
    ("abcd,cde->abe", (2, 3, 4, 5), (4, 5, 6)),      # DenseGeneral, axis=(-2, -1)
    ("bhqd,bhkd->bhqk", (2, 3, 5, 4), (2, 3, 7, 4)),  # attention logits
    ("bhqk,bhkd->bhqd", (2, 3, 5, 7), (2, 3, 7, 4)),  # attention values
])
def test_einsum_accumulates_in_float32_forward_and_backward(spec, lhs_shape, rhs_shape):
  """layers.einsum in bf16 equals the f32 einsum of the bf16 values (rounded once to bf16),
  and so do its gradients; every dot it lowers to, forward and backward, is bf16 x bf16 ->
  f32 (the form XLA:CPU runs at ~2x f32 on AVX512-BF16; JAX's own transpose would give
  f32 x bf16)."""
  rng = np.random.default_rng(0)
  lhs = jnp.asarray(rng.standard_normal(lhs_shape), jnp.bfloat16)
  rhs = jnp.asarray(rng.standard_normal(rhs_shape), jnp.bfloat16)
  ct = jnp.asarray(rng.standard_normal(jnp.einsum(spec, lhs, rhs).shape), jnp.bfloat16)
  out, vjp = jax.vjp(lambda a, b: layers.einsum(spec, a, b), lhs, rhs)
  ref_out, ref_vjp = jax.vjp(lambda a, b: jnp.einsum(spec, a, b), lhs.astype(jnp.float32),
                             rhs.astype(jnp.float32))
  grads, ref_grads = vjp(ct), ref_vjp(ct.astype(jnp.float32))
  for got, want in [(out, ref_out), *zip(grads, ref_grads)]:
    assert got.dtype == jnp.bfloat16
    want = np.asarray(want, np.float32)
    # One bf16 rounding of an f32 sum (summation order may differ): within 2^-8 relative.
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=2 ** -8,
                               atol=1e-6 * np.abs(want).max())
  hlo = jax.jit(lambda a, b, c: jax.vjp(lambda x, y: layers.einsum(spec, x, y), a, b)[1](c)
                ).lower(lhs, rhs, ct).as_text()
  hlo += jax.jit(lambda a, b: layers.einsum(spec, a, b)).lower(lhs, rhs).as_text()
  dots = [l for l in hlo.splitlines() if "dot_general" in l]
  assert len(dots) == 3
  for dot in dots:
    operands, result = dot.rsplit("->", 1)
    assert operands.count("xbf16>") == 2 and result.strip().endswith("xf32>"), dot
  # float32: the same custom VJP, all f32, values and gradients of jnp.einsum.
  f32_args = (lhs.astype(jnp.float32), rhs.astype(jnp.float32))
  out, vjp = jax.vjp(lambda a, b: layers.einsum(spec, a, b), *f32_args)
  for got, want in [(out, ref_out), *zip(vjp(ct.astype(jnp.float32)), ref_grads)]:
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
  hlo = jax.jit(lambda a, b, c: jax.vjp(lambda x, y: layers.einsum(spec, x, y), a, b)[1](c)
                ).lower(*f32_args, ct.astype(jnp.float32)).as_text()
  assert "bf16" not in hlo and hlo.count("dot_general") == 2
