"""Recommendation baselines: popularity and SASRec (also the source of collaborative item embeddings)."""
