"""Retrieval baselines: popularity and SASRec for recommendation (SASRec's item table is
also the collaborative item embedding of genret_jax.ids)."""
