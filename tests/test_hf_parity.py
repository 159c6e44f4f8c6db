"""Our T5 equals Hugging Face's T5 on converted weights (encoder, logits, KV cache)."""

import functools
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from genret_jax.errors import DataError
from genret_jax.model import hf_convert, network

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

HF_VOCAB = 100
TOL = 1e-4


def _hf_model(directory, *, v11: bool, seed: int = 0):
  """A random tiny HF T5 saved to `directory` (safetensors); returns the torch model."""
  kwargs = dict(vocab_size=HF_VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2,
                num_decoder_layers=3, num_heads=4, relative_attention_num_buckets=8,
                relative_attention_max_distance=20, dropout_rate=0.0, decoder_start_token_id=0)
  if v11:
    cfg = transformers.T5Config(feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                **kwargs)
  else:
    cfg = transformers.T5Config(feed_forward_proj="relu", **kwargs)
  torch.manual_seed(seed)
  model = transformers.T5ForConditionalGeneration(cfg).eval()
  with torch.no_grad():
    for p in model.parameters():  # larger than HF's init so every term matters
      p.normal_(0.0, 0.25)
    if v11:  # a distinct output head, as in Flan-T5 checkpoints
      model.lm_head.weight = torch.nn.Parameter(torch.randn(HF_VOCAB, 32))
      model.config.tie_word_embeddings = False
  model.save_pretrained(directory)
  return model


def _inputs():
  rng = np.random.default_rng(0)
  # Encoder inputs with trailing padding; decoder targets without padding.
  enc = rng.integers(2, HF_VOCAB, size=(3, 30)).astype(np.int32)
  enc[0, 22:] = 0
  enc[1, 9:] = 0
  targets = rng.integers(2, HF_VOCAB, size=(3, 7)).astype(np.int32)
  dec_in = np.concatenate([np.zeros((3, 1), np.int32), targets[:, :-1]], axis=1)
  return enc, dec_in, targets


def _hf_outputs(model, enc, dec_in):
  with torch.no_grad():
    ids = torch.tensor(enc, dtype=torch.long)
    mask = torch.tensor(enc > 0, dtype=torch.long)
    encoded = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    logits = model(input_ids=ids, attention_mask=mask,
                   decoder_input_ids=torch.tensor(dec_in, dtype=torch.long)).logits
  return encoded.numpy(), logits.numpy()


@functools.lru_cache(maxsize=None)
def _jitted(cfg: network.T5Config):
  """Jitted forward / encode / cached step of a config, shared by the tests."""
  model = network.Transformer(cfg)
  forward = jax.jit(lambda p, e, d, t: model.apply({"params": p}, e, d, t, enable_dropout=False))
  encode = jax.jit(lambda p, e: model.apply({"params": p}, e, enable_dropout=False,
                                            method=model.encode))

  @jax.jit
  def step(params, cache, encoded, enc, token):
    out, mutated = model.apply({"params": params, "cache": cache}, encoded, enc, token, token,
                               enable_dropout=False, decode=True, mutable=["cache"],
                               method=model.decode)
    return out, mutated["cache"]
  return model, forward, encode, step


@pytest.mark.parametrize("v11", [True, False], ids=["t5_v1_1_untied", "t5_original_tied"])
def test_matches_hf_with_and_without_cache(tmp_path, v11):
  hf_model = _hf_model(tmp_path, v11=v11)
  cfg, params, spiece = hf_convert.load_hf_checkpoint(tmp_path)
  assert spiece is None
  assert cfg.vocab_size == 128
  assert cfg.logits_via_embedding == (not v11)
  assert cfg.mlp_activations == (("gelu", "linear") if v11 else ("relu",))
  model, forward, encode, step = _jitted(cfg)
  enc, dec_in, targets = _inputs()
  hf_encoded, hf_logits = _hf_outputs(hf_model, enc, dec_in)

  # The converted tree is exactly the tree our init creates.
  init_shapes = jax.eval_shape(lambda: nn.unbox(model.init(
      jax.random.PRNGKey(0), enc, dec_in, targets, enable_dropout=False)["params"]))
  assert jax.tree_util.tree_structure(init_shapes) == jax.tree_util.tree_structure(params)
  assert jax.tree_util.tree_map(lambda s: s.shape, init_shapes) == \
      jax.tree_util.tree_map(lambda a: a.shape, params)

  encoded = encode(params, enc)
  valid = enc > 0
  np.testing.assert_allclose(np.asarray(encoded)[valid], hf_encoded[valid], atol=TOL, rtol=TOL)

  logits = np.asarray(forward(params, enc, dec_in, targets))
  assert logits.dtype == np.float32 and logits.shape == (3, 7, 128)
  np.testing.assert_allclose(logits[..., :HF_VOCAB], hf_logits, atol=TOL, rtol=TOL)
  if v11:  # zero rows of the padded head give logit 0
    np.testing.assert_array_equal(logits[..., HF_VOCAB:], 0.0)

  # Step by step with the KV cache, one jitted step function.
  cache = network.init_cache(model, 3, dec_in.shape[1], enc.shape[1])
  stepped = []
  for t in range(dec_in.shape[1]):
    out, cache = step(params, cache, encoded, enc, dec_in[:, t:t + 1])
    stepped.append(np.asarray(out))
  stepped = np.concatenate(stepped, axis=1)
  np.testing.assert_allclose(stepped, logits, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(stepped[..., :HF_VOCAB], hf_logits, atol=TOL, rtol=TOL)
  assert int(cache["decoder"]["layers_0"]["self_attention"]["cache_index"]) == dec_in.shape[1]
  # And with the encoder keys/values projected once into the cache.
  cache = network.init_cache(model, 3, dec_in.shape[1], enc.shape[1], params=params,
                             encoded=encoded, encoder_input_tokens=enc)
  stepped = []
  for t in range(dec_in.shape[1]):
    out, cache = step(params, cache, encoded, enc, dec_in[:, t:t + 1])
    stepped.append(np.asarray(out))
  np.testing.assert_allclose(np.concatenate(stepped, axis=1)[..., :HF_VOCAB], hf_logits,
                             atol=TOL, rtol=TOL)


def test_greedy_generation_matches_hf_generate(tmp_path):
  # (HF generate with its cache needs num_decoder_layers == num_layers; use_cache=False.)
  hf_model = _hf_model(tmp_path, v11=True, seed=3)
  cfg, params, _ = hf_convert.load_hf_checkpoint(tmp_path)
  model, _, encode, step = _jitted(cfg)
  enc, _, _ = _inputs()
  steps = 7
  with torch.no_grad():
    hf_tokens = hf_model.generate(input_ids=torch.tensor(enc, dtype=torch.long),
                                  attention_mask=torch.tensor(enc > 0, dtype=torch.long),
                                  max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                                  num_beams=1, use_cache=False).numpy()[:, 1:]
  encoded = encode(params, enc)
  cache = network.init_cache(model, 3, steps, enc.shape[1])
  token = jnp.zeros((3, 1), jnp.int32)
  ours = []
  for _ in range(steps):
    logits, cache = step(params, cache, encoded, enc, token)
    # HF forbids EOS before min_new_tokens and never picks padded vocabulary rows.
    step_logits = logits[:, 0, :HF_VOCAB].at[:, 1].set(-jnp.inf)
    token = jnp.argmax(step_logits, axis=-1)[:, None].astype(jnp.int32)
    ours.append(np.asarray(token))
  np.testing.assert_array_equal(np.concatenate(ours, axis=1), hf_tokens)


def test_returns_spiece_model_and_honours_overrides(tmp_path):
  _hf_model(tmp_path, v11=True)
  (tmp_path / "spiece.model").write_bytes(b"sentencepiece bytes")
  cfg, _, spiece = hf_convert.load_hf_checkpoint(tmp_path, dtype=jnp.bfloat16, dropout_rate=0.2)
  assert spiece == str(tmp_path / "spiece.model")
  assert cfg.dtype == jnp.bfloat16 and cfg.dropout_rate == 0.2


def test_reads_pytorch_model_bin(tmp_path):
  hf_model = _hf_model(tmp_path / "st", v11=True)
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "config.json").write_text((tmp_path / "st" / "config.json").read_text())
  torch.save(hf_model.state_dict(), bin_dir / "pytorch_model.bin")
  _, from_st, _ = hf_convert.load_hf_checkpoint(tmp_path / "st")
  _, from_bin, _ = hf_convert.load_hf_checkpoint(bin_dir)
  jax.tree_util.tree_map(np.testing.assert_array_equal, from_st, from_bin)


# ---------------------------------------------------------------- error paths

def test_missing_directory_and_files(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    hf_convert.load_hf_checkpoint(tmp_path / "nope")
  with pytest.raises(DataError, match="config.json: missing"):
    hf_convert.load_hf_checkpoint(tmp_path)
  _hf_model(tmp_path, v11=True)
  (tmp_path / "model.safetensors").unlink()
  with pytest.raises(DataError, match="no weights"):
    hf_convert.load_hf_checkpoint(tmp_path)


def test_pytorch_bin_without_torch_is_a_clear_error(tmp_path, monkeypatch):
  _hf_model(tmp_path, v11=True)
  (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(DataError, match="needs torch"):
    hf_convert.load_hf_checkpoint(tmp_path)


def test_config_mismatch_and_bad_values(tmp_path):
  _hf_model(tmp_path, v11=True)
  config_path = tmp_path / "config.json"
  original = json.loads(config_path.read_text())

  config_path.write_text(json.dumps({**original, "d_ff": 50}))
  with pytest.raises(DataError, match=r"DenseReluDense.wi_0.weight: shape \(48, 32\) does not "
                     r"match config.json \(50, 32\)"):
    hf_convert.load_hf_checkpoint(tmp_path)

  config_path.write_text(json.dumps({**original, "feed_forward_proj": "gated-foo"}))
  with pytest.raises(DataError, match="feed_forward_proj: unsupported activation 'foo'"):
    hf_convert.load_hf_checkpoint(tmp_path)

  broken = dict(original)
  del broken["d_kv"]
  config_path.write_text(json.dumps(broken))
  with pytest.raises(DataError, match="config.json: d_kv: missing key"):
    hf_convert.load_hf_checkpoint(tmp_path)

  config_path.write_text(json.dumps({**original, "model_type": "bart"}))
  with pytest.raises(DataError, match="model_type: model_type 'bart' is not a T5 model"):
    hf_convert.load_hf_checkpoint(tmp_path)

  config_path.write_text("{not json")
  with pytest.raises(DataError, match="config.json:1: not valid JSON"):
    hf_convert.load_hf_checkpoint(tmp_path)


def test_missing_tensor_is_named(tmp_path):
  _hf_model(tmp_path, v11=True)
  from safetensors.numpy import load_file, save_file
  state = load_file(str(tmp_path / "model.safetensors"))
  del state["decoder.block.2.layer.1.EncDecAttention.k.weight"]
  save_file(state, str(tmp_path / "model.safetensors"))
  with pytest.raises(DataError, match="decoder.block.2.layer.1.EncDecAttention.k.weight: "
                     "missing tensor"):
    hf_convert.load_hf_checkpoint(tmp_path)


def test_load_pretrained_resizes_vocabulary_for_new_tokens(tmp_path):
  from genret_jax.model import builder
  from genret_jax.model import config as model_config
  hf_model = _hf_model(tmp_path, v11=True)
  block = model_config.default_config()
  block.hf_checkpoint = str(tmp_path)
  block.dropout_rate = 0.0
  cfg, params, _ = builder.load_pretrained(block, vocab_size=HF_VOCAB + 150, seed=1)
  assert cfg.vocab_size == 256 and cfg.num_decoder_layers == 3 and cfg.mlp_dim == 48
  emb = params["token_embedder"]["embedding"]
  head = params["decoder"]["logits_dense"]["kernel"]
  assert emb.shape == (256, 32) and head.shape == (32, 256)
  np.testing.assert_array_equal(emb[:HF_VOCAB], hf_model.shared.weight.detach().numpy())
  # New rows follow the per-dimension statistics of the trained ones.
  np.testing.assert_allclose(emb[HF_VOCAB:].std(), emb[:HF_VOCAB].std(), rtol=0.1)
  assert len({tuple(r) for r in emb[HF_VOCAB:]}) == 256 - HF_VOCAB  # all distinct
  np.testing.assert_allclose(head[:, HF_VOCAB:].std(), head[:, :HF_VOCAB].std(), rtol=0.1)
  # Logits of the checkpoint's own tokens are unchanged.
  enc, dec_in, targets = _inputs()
  _, hf_logits = _hf_outputs(hf_model, enc, dec_in)
  logits = _jitted(cfg)[1](params, enc, dec_in, targets)
  np.testing.assert_allclose(np.asarray(logits)[..., :HF_VOCAB], hf_logits, atol=TOL, rtol=TOL)
  # Deterministic in the seed.
  _, again, _ = builder.load_pretrained(block, vocab_size=HF_VOCAB + 150, seed=1)
  np.testing.assert_array_equal(again["token_embedder"]["embedding"], emb)
  # A smaller vocabulary drops rows it never produces.
  small_cfg, small, _ = builder.load_pretrained(block, vocab_size=60)
  assert small_cfg.vocab_size == 128
  np.testing.assert_array_equal(small["token_embedder"]["embedding"][:60], emb[:60])


def test_load_pretrained_needs_a_checkpoint():
  from genret_jax.errors import ConfigError
  from genret_jax.model import builder
  from genret_jax.model import config as model_config
  with pytest.raises(ConfigError, match="config.model.hf_checkpoint: is empty"):
    builder.load_pretrained(model_config.default_config(), 100)


def test_reads_bfloat16_and_sharded_safetensors(tmp_path):
  hf_model = _hf_model(tmp_path / "f32", v11=True)
  _, reference, _ = hf_convert.load_hf_checkpoint(tmp_path / "f32")
  hf_model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16", max_shard_size="20KB")
  files = sorted(p.name for p in (tmp_path / "bf16").iterdir())
  assert "model.safetensors.index.json" in files and "model.safetensors" not in files
  assert sum(name.endswith(".safetensors") for name in files) > 1
  _, params, _ = hf_convert.load_hf_checkpoint(tmp_path / "bf16")
  # Values are the bfloat16 roundings of the float32 ones, returned as float32.
  jax.tree_util.tree_map(
      lambda got, want: np.testing.assert_array_equal(
          got, want.astype(jnp.bfloat16).astype(np.float32)), params, reference)
  assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(params))


def test_truncated_safetensors_is_a_data_error(tmp_path):
  _hf_model(tmp_path, v11=True)
  path = tmp_path / "model.safetensors"
  path.write_bytes(path.read_bytes()[:-100])
  with pytest.raises(DataError, match=r"model.safetensors: .*: data offsets .* do not fit "
                     r"shape .*file truncated"):
    hf_convert.load_hf_checkpoint(tmp_path)
  path.write_bytes(b"\x05\x00")
  with pytest.raises(DataError, match="not a safetensors file"):
    hf_convert.load_hf_checkpoint(tmp_path)
