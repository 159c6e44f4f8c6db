"""Defaults of the `decode` and `eval` config blocks (owned by genret_jax.decoding)."""

import ml_collections


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.beam_size = 30
  c.mode = "constrained"      # constrained | unconstrained | diverse
  return c


def eval_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.ks = (1, 5, 10, 20, 30)
  c.protocol = "full"         # full | sampled | both
  return c
