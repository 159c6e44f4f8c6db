"""genret_jax.tasks."""
