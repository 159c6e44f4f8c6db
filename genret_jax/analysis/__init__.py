"""Analyses of trained models (`config.analyses`): H1 popularity of predictions, H2
neighbourhoods of ID-token embeddings; registered by name in
genret_jax.analysis.registry.ANALYSES and run by genret_jax.pipeline.analyze."""
