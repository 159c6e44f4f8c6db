"""genret_jax.train."""
