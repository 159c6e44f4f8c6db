"""Analyses of trained models (`config.analyses`): H1 popularity of predictions, H2
neighbourhoods of ID-token embeddings (run by genret_jax.pipeline.analyze)."""

ANALYSES = ("h1", "h2")
