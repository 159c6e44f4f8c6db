"""genret_jax: unified generative retrieval (search + recommendation) in JAX/Flax."""

__version__ = "0.1.0"
