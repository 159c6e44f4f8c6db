"""genret_jax.decoding."""
