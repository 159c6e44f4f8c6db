"""Item embeddings for the quantizers.

Semantic (content) embeddings come from item text:
  tfidf  TF-IDF + truncated SVD (scikit-learn), rows L2-normalized; offline default.
  npy    a user-supplied float[num_items, d] file (any text encoder).
  t5     mean-pooled encoder states of a Hugging Face T5 / Flan-T5 checkpoint
         directory (converted by genret_jax.model.hf_convert), tokenized with
         its spiece.model.
Collaborative embeddings:
  sasrec the item table of SASRec trained on TRAIN rec events.
  npy    a user-supplied float[num_items, d] file.
"""

from __future__ import annotations

import logging
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import sentencepiece as spm
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from genret_jax.baselines import sasrec
from genret_jax.data.schema import Catalog, Events
from genret_jax.errors import ConfigError, DataError
from genret_jax.model import hf_convert, network

_WORD = re.compile(r"(?u)\b\w+\b")   # the TF-IDF token pattern


def load_npy(path: str, num_items: int) -> np.ndarray:
  """float32[num_items, d] from a .npy file; DataError naming the file otherwise."""
  if not path or not os.path.isfile(path):
    raise DataError(path or "''", "embedding file does not exist")
  try:
    x = np.load(path, allow_pickle=False)
  except (ValueError, OSError) as e:
    raise DataError(path, f"not a readable .npy array ({e})") from None
  if x.ndim != 2 or x.shape[0] != num_items or x.shape[1] < 1:
    raise DataError(path, f"embedding shape {tuple(x.shape)} does not match "
                    f"[num_items={num_items}, d]", field="shape")
  if not np.issubdtype(x.dtype, np.number):
    raise DataError(path, f"dtype {x.dtype} is not numeric", field="dtype")
  bad = ~np.isfinite(x).all(axis=1)
  if bad.any():
    raise DataError(path, f"row {int(np.flatnonzero(bad)[0])} has a non-finite value",
                    field="values")
  return x.astype(np.float32)


def _field_order(catalog: Catalog, fields: str) -> tuple[str, ...] | None:
  if not fields:
    return None
  names = tuple(f.strip() for f in fields.split(",") if f.strip())
  unknown = [f for f in names if f not in catalog.fields]
  if unknown:
    raise ConfigError("ids.semantic.fields",
                      f"unknown field(s) {unknown}; the catalog has {sorted(catalog.fields)}")
  return names


def tfidf_svd(texts: list[str], dim: int, seed: int = 0, max_features: int = 50000) -> np.ndarray:
  """float32[N, <= dim]: TF-IDF (unigrams + bigrams, sublinear tf) -> truncated SVD,
  rows L2-normalized (an item with no text gets the zero vector).

  Only the `max_features` most frequent terms are kept; items whose words are
  all outside them get the zero vector too, which is logged as a warning.
  """
  vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=max_features,
                        token_pattern=r"(?u)\b\w+\b")
  try:
    tfidf = vec.fit_transform(texts)
  except ValueError:
    raise ConfigError("ids.semantic.source", "tfidf: the item texts contain no words; use "
                      "ids.semantic.source=npy") from None
  lost = int(((tfidf.getnnz(axis=1) == 0)
               & np.asarray([bool(_WORD.search(t)) for t in texts])).sum())
  if lost:   # e.g. 1M simulated items and the default 50,000 features: 51% of items
    logging.getLogger(__name__).warning(
        "ids.semantic: %d of %d items (%.1f%%) have words but none among the %d most "
        "frequent TF-IDF terms: their embeddings are zero and their identifiers collide; "
        "raise ids.semantic.max_features", lost, len(texts), 100 * lost / len(texts),
        tfidf.shape[1])
  n_comp = max(1, min(dim, tfidf.shape[1] - 1, tfidf.shape[0] - 1))
  svd = TruncatedSVD(n_components=n_comp, random_state=seed, algorithm="randomized", n_iter=7)
  x = svd.fit_transform(tfidf)
  norm = np.linalg.norm(x, axis=1, keepdims=True)
  return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def t5_mean_pooled(texts: list[str], checkpoint_dir: str, *, max_length: int = 128,
                   batch_size: int = 64) -> np.ndarray:
  """float32[N, d_model]: mean over non-pad tokens of the T5 encoder's output."""
  cfg, params, spiece = hf_convert.load_hf_checkpoint(checkpoint_dir, dropout_rate=0.0)
  if spiece is None:
    raise DataError(os.path.join(checkpoint_dir, "spiece.model"),
                    "the T5 checkpoint has no SentencePiece model to tokenize item text")
  sp = spm.SentencePieceProcessor(model_file=spiece)
  eos = sp.eos_id() if sp.eos_id() > 0 else 1
  tokens = np.zeros((len(texts), max_length), np.int32)
  for i, ids in enumerate(sp.encode(texts)):       # host-side tokenization
    ids = list(ids)[:max_length - 1] + [eos]
    tokens[i, :len(ids)] = ids
  model = network.Transformer(cfg)

  @jax.jit
  def pooled(tok):
    h = model.apply({"params": params}, tok, method=network.Transformer.encode,
                    enable_dropout=False).astype(jnp.float32)
    m = (tok > 0).astype(jnp.float32)[..., None]
    return jnp.sum(h * m, 1) / jnp.maximum(jnp.sum(m, 1), 1.0)

  n = len(texts)
  batch_size = max(1, min(batch_size, n))
  pad = -n % batch_size
  tokens = np.concatenate([tokens, np.zeros((pad, max_length), np.int32)])
  out = [np.asarray(pooled(jnp.asarray(tokens[s:s + batch_size])))
         for s in range(0, tokens.shape[0], batch_size)]
  return np.concatenate(out)[:n]


def semantic_embeddings(c: ml_collections.ConfigDict, catalog: Catalog,
                        seed: int = 0) -> np.ndarray:
  """float32[num_items, d] content embeddings per `ids.semantic`."""
  if c.source == "npy":
    return load_npy(c.path, catalog.num_items)
  texts = catalog.texts(_field_order(catalog, c.fields))
  if c.source == "tfidf":
    return tfidf_svd(texts, int(c.dim), seed, int(c.max_features))
  if c.source == "t5":
    if not c.path:
      raise ConfigError("ids.semantic.path", "source=t5 needs a HF T5 checkpoint directory")
    return t5_mean_pooled(texts, c.path, max_length=int(c.max_length),
                          batch_size=int(c.batch_size))
  raise ConfigError("ids.semantic.source", f"must be tfidf, npy or t5, got {c.source!r}")


def collaborative_embeddings(ids_config: ml_collections.ConfigDict, catalog: Catalog,
                             events: Events, split: np.ndarray,
                             verbose: bool = False) -> tuple[np.ndarray, dict]:
  """(float32[num_items, d], info) collaborative embeddings per `ids.collaborative`.

  info holds SASRec's validation history and test metrics when it was trained.
  """
  c = ids_config.collaborative
  if c.source == "npy":
    return load_npy(c.path, catalog.num_items), {"source": "npy", "path": c.path}
  if c.source != "sasrec":
    raise ConfigError("ids.collaborative.source", f"must be sasrec or npy, got {c.source!r}")
  s = ids_config.sasrec
  res = sasrec.train_from_config(events, split, catalog.num_items, s, seed=int(s.seed),
                                 verbose=verbose)
  return res.item_embeddings, {"source": "sasrec", "best_epoch": res.best_epoch,
                               "test": res.test_metrics,
                               "valid": [h[2] for h in res.valid_history]}
