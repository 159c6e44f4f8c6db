"""genret_jax.evaluation."""
