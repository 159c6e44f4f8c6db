"""Item embeddings: TF-IDF + SVD, user .npy files, mean-pooled T5 encoder states."""

import io

import numpy as np
import pytest

from genret_jax import config as base_config
from genret_jax.data.schema import Catalog
from genret_jax.errors import ConfigError, DataError
from genret_jax.ids import embeddings as emb


def _catalog():
  titles = np.array(["red lipstick matte", "red lipstick matte", "blue nail polish",
                     "green tea face cream", "blue nail polish glitter", ""], object)
  brands = np.array(["acme", "acme", "nailco", "teaco", "nailco", ""], object)
  return Catalog(np.array([f"i{k}" for k in range(6)]), {"title": titles, "brand": brands})


def test_tfidf_svd_shapes_norms_and_text_identity():
  c = base_config.get_base_config().ids.semantic
  c.dim = 4
  x = emb.semantic_embeddings(c, _catalog())
  assert x.shape == (6, 4) and x.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(x[:5], axis=1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(x[5], 0.0)                 # no text -> zero vector
  np.testing.assert_allclose(x[0], x[1], atol=1e-6)         # same text -> same vector
  sim = x @ x.T
  assert sim[2, 4] > sim[2, 0] and sim[2, 4] > sim[2, 3]    # shared words -> closer
  c.fields = "brand"
  xb = emb.semantic_embeddings(c, _catalog())
  np.testing.assert_allclose(xb[2], xb[4], atol=1e-6)       # same brand only
  c.fields = "brand,colour"
  with pytest.raises(ConfigError, match="config.ids.semantic.fields"):
    emb.semantic_embeddings(c, _catalog())


def test_tfidf_warns_when_items_keep_no_term(caplog):
  texts = ["red shoe", "red boot", "red hat", "red shoe", "blue cap", ""]
  with caplog.at_level("WARNING", logger="genret_jax.ids.embeddings"):
    x = emb.tfidf_svd(texts, 2)
  assert not caplog.records                                  # an empty text is not lost
  with caplog.at_level("WARNING", logger="genret_jax.ids.embeddings"):
    x = emb.tfidf_svd(texts, 2, max_features=2)   # "red" + "shoe" or "red shoe"
  np.testing.assert_array_equal(x[4], 0.0)
  assert len(caplog.records) == 1
  assert "1 of 6 items (16.7%) have words but none among the 2 most" in caplog.text


def test_tfidf_with_no_words_is_a_config_error():
  cat = Catalog(np.array(["a", "b"]), {"title": np.array(["", ""], object)})
  with pytest.raises(ConfigError, match="config.ids.semantic.source"):
    emb.tfidf_svd(cat.texts(), 4)


def test_load_npy_checks(tmp_path):
  good = np.arange(12, dtype=np.float64).reshape(6, 2)
  np.save(tmp_path / "ok.npy", good)
  x = emb.load_npy(str(tmp_path / "ok.npy"), 6)
  assert x.dtype == np.float32
  np.testing.assert_array_equal(x, good)
  with pytest.raises(DataError, match=r"ok\.npy: shape: embedding shape \(6, 2\) does not "
                     r"match \[num_items=7, d\]"):
    emb.load_npy(str(tmp_path / "ok.npy"), 7)
  bad = good.copy()
  bad[3, 1] = np.nan
  np.save(tmp_path / "nan.npy", bad)
  with pytest.raises(DataError, match=r"nan\.npy: values: row 3 has a non-finite value"):
    emb.load_npy(str(tmp_path / "nan.npy"), 6)
  (tmp_path / "junk.npy").write_text("not numpy")
  with pytest.raises(DataError, match=r"junk\.npy: not a readable \.npy array"):
    emb.load_npy(str(tmp_path / "junk.npy"), 6)
  np.save(tmp_path / "flat.npy", np.zeros(6))
  with pytest.raises(DataError, match="flat.npy: shape"):
    emb.load_npy(str(tmp_path / "flat.npy"), 6)
  with pytest.raises(DataError, match="absent.npy: embedding file does not exist"):
    emb.load_npy(str(tmp_path / "absent.npy"), 6)


def test_t5_mean_pooled_equals_hugging_face(tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  import sentencepiece as spm
  texts = _catalog().texts()
  model_bytes = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter([t for t in texts if t] * 20),
                                 model_writer=model_bytes, vocab_size=40, pad_id=0, eos_id=1,
                                 unk_id=2, bos_id=-1, model_type="unigram",
                                 hard_vocab_limit=False)
  (tmp_path / "spiece.model").write_bytes(model_bytes.getvalue())
  cfg = transformers.T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=24, num_layers=2,
                              num_heads=4, feed_forward_proj="gated-gelu",
                              tie_word_embeddings=False, dropout_rate=0.0,
                              decoder_start_token_id=0)
  torch.manual_seed(0)
  hf = transformers.T5ForConditionalGeneration(cfg).eval()
  hf.save_pretrained(tmp_path)
  c = base_config.get_base_config().ids.semantic
  c.update(source="t5", path=str(tmp_path), max_length=8, batch_size=4)
  x = emb.semantic_embeddings(c, _catalog())
  assert x.shape == (6, 16)
  sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "spiece.model"))
  tok = np.zeros((6, 8), np.int64)
  for i, ids in enumerate(sp.encode(texts)):
    ids = ids[:7] + [1]
    tok[i, :len(ids)] = ids
  with torch.no_grad():
    mask = torch.tensor(tok > 0)
    h = hf.encoder(input_ids=torch.tensor(tok), attention_mask=mask.long()).last_hidden_state
    ref = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
  np.testing.assert_allclose(x, ref.numpy(), atol=1e-4)
  (tmp_path / "spiece.model").unlink()
  with pytest.raises(DataError, match="spiece.model: the T5 checkpoint has no SentencePiece"):
    emb.semantic_embeddings(c, _catalog())
