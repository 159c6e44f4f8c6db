"""Initialising training from a Hugging Face T5 / Flan-T5 checkpoint.

Our vocabulary appends identifier and behaviour tokens after the
SentencePiece pieces, so it is usually larger than the checkpoint's. The
embedding (and an untied output head) keep the checkpoint's rows and gain new
rows for the appended tokens, initialised like a fresh T5X model (embedding
rows ~ N(0, 1), head columns ~ N(0, 1/emb_dim)), deterministically from
`train.seed`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn

from genret_jax.errors import ConfigError


def _grow_rows(x: np.ndarray, rows: int, std: float, rng: np.random.Generator) -> np.ndarray:
  extra = rng.normal(0.0, std, (rows - x.shape[0],) + x.shape[1:]).astype(np.float32)
  return np.concatenate([x.astype(np.float32), extra], axis=0)


def load(config: ml_collections.ConfigDict, vocab_size: int) -> tuple[nn.Module, dict[str, Any]]:
  """(Transformer, float32 numpy params) from `config.model.hf_checkpoint`.

  The checkpoint fixes the network's dimensions (`model.size` is ignored);
  `model.dtype` and `model.dropout_rate` still apply.
  """
  from genret_jax.model import hf_convert, network  # pylint: disable=g-import-not-at-top
  cfg, params, _ = hf_convert.load_hf_checkpoint(
      config.model.hf_checkpoint, dtype=jnp.dtype(config.model.dtype),
      dropout_rate=float(config.model.dropout_rate))
  padded = network.pad_vocab_size(vocab_size)
  if padded < cfg.vocab_size:
    raise ConfigError("model.hf_checkpoint", f"the checkpoint's vocabulary ({cfg.vocab_size} "
                      f"rows) is larger than ours ({vocab_size} tokens, {padded} padded)")
  if padded > cfg.vocab_size:
    rng = np.random.default_rng(int(config.train.seed))
    emb = params["token_embedder"]["embedding"]
    params["token_embedder"]["embedding"] = _grow_rows(emb, padded, 1.0, rng)
    head = params["decoder"].get("logits_dense")
    if head is not None:
      head["kernel"] = _grow_rows(head["kernel"].T, padded, cfg.emb_dim ** -0.5, rng).T.copy()
    cfg = dataclasses.replace(cfg, vocab_size=padded)
  return network.Transformer(cfg), params
