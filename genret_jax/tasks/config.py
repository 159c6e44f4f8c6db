"""Defaults of the `vocab` and `tasks` config blocks (owned by genret_jax.tasks)."""

import ml_collections


def vocab_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.sp_model = ""             # path to an existing SentencePiece .model; '' = train one
  c.sp_vocab_size = 2000      # size when training one on the prepared corpus
  return c


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.mixture = "joint"         # rec_only | search_only | joint | gensar
  c.max_input_length = 128
  c.max_target_length = 8
  return c
