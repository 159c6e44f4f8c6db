"""genret_jax.bench."""
