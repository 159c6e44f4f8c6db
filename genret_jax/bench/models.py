"""Models shared by the benchmarks (no flags here, so any benchmark may import it)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from genret_jax.model import network

TIGER_DIMS = dict(emb_dim=128, num_heads=6, head_dim=64, mlp_dim=1024, num_encoder_layers=4,
                  num_decoder_layers=4)
TIGER_DIMS_TEXT = "T5 d_model 128, 4+4 layers, 6x64 heads, MLP 1024"


def tiger_like_model(vocab_size: int) -> tuple[network.Transformer, Any]:
  """A random-weight T5 with TIGER's dims (Rajput et al. 2023) and its params.

  Weights are N(0, 1/fan_in) (scales 1), seeded, so every run decodes the same.
  """
  cfg = network.T5Config(vocab_size=network.pad_vocab_size(vocab_size), dropout_rate=0.0,
                         **TIGER_DIMS)
  module = network.Transformer(cfg)
  tok = jnp.ones((1, 4), jnp.int32)
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), tok, tok, tok,
                                              enable_dropout=False))["params"]
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: (rng.normal(size=s.shape) / np.sqrt(s.shape[0])
                                   if len(s.shape) > 1 else np.ones(s.shape)
                                   ).astype(np.float32), nn.unbox(shapes))
  return module, jax.device_put(params)
