"""genret_jax.model."""
