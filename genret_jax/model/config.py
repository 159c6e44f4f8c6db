"""Defaults of the `model` and `mesh` config blocks (owned by genret_jax.model)."""

import ml_collections

# `model` keys that override one dimension of `model.size` when > 0 (T5Config fields).
DIM_KEYS = ("num_encoder_layers", "num_decoder_layers", "emb_dim", "num_heads", "head_dim",
            "mlp_dim")


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.size = "tiny"             # tiny | small | base | large
  # Per-dimension overrides of the size's values (DIM_KEYS); 0 = the size's value.
  # E.g. TIGER (configs/tiger.py): 4 + 4 layers, emb_dim 128, 6 heads x 64, mlp 1024.
  c.num_encoder_layers = 0
  c.num_decoder_layers = 0
  c.emb_dim = 0               # d_model
  c.num_heads = 0
  c.head_dim = 0              # per head; num_heads * head_dim need not equal emb_dim
  c.mlp_dim = 0               # feed-forward hidden size (each of the two gated inputs)
  c.dtype = "float32"         # activation dtype: float32 | bfloat16
  c.dropout_rate = 0.0        # paper scale: 0.1 (T5's)
  c.attention_dropout_bits = 16  # random bits per attention-weight dropout draw: 16
                                 # (half the hashing; rate within 2^-17) | 32 (T5X's)
  c.logits_via_embedding = False  # tie the output head to the embedding (original T5)
  c.hf_checkpoint = ""        # HF T5/Flan-T5 directory to initialise from; its
                              # architecture then replaces size/logits_via_embedding
  return c


def mesh_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.data = -1                 # batch parallelism; -1 = all remaining devices
  c.model = 1                 # tensor parallelism over heads / mlp / vocab
  return c
