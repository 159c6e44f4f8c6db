"""Defaults of the `model` and `mesh` config blocks (owned by genret_jax.model)."""

import ml_collections


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.size = "tiny"             # tiny | small | base | large
  c.dtype = "float32"         # activation dtype: float32 | bfloat16
  c.dropout_rate = 0.1
  c.logits_via_embedding = False  # tie the output head to the embedding (original T5)
  c.hf_checkpoint = ""        # HF T5/Flan-T5 directory to initialise from; its
                              # architecture then replaces size/logits_via_embedding
  return c


def mesh_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.data = -1                 # batch parallelism; -1 = all remaining devices
  c.model = 1                 # tensor parallelism over heads / mlp / vocab
  return c
