"""Defaults of the `data` config block (owned by genret_jax.data)."""

import ml_collections


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.source = "simulated"      # simulated | movielens | amazon | generic
  c.path = ""                 # raw data folder (not used by `simulated`)
  c.max_history = 20          # events of context kept per example
  c.seed = 0
  return c
