"""Defaults of the `train` config block (owned by genret_jax.train)."""

import ml_collections


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_steps = 300
  c.batch_size = 64
  c.optimizer = "adamw"       # adamw | adafactor
  c.learning_rate = 1e-3
  c.seed = 0
  return c
