"""Defaults of the `ids` config block (owned by genret_jax.ids)."""

import ml_collections


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.scheme = "atomic"         # atomic | rq_kmeans | rq_vae | gensar
  c.seed = 0
  return c
