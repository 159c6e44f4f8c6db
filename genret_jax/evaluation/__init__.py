"""genret_jax.evaluation: retrieval metrics, the one decode path of the evaluation
(generative: catalog_trie -> decode_full / decode_sampled, evaluate_generative), results files."""

from genret_jax.evaluation.generative import (FullDecode, catalog_trie, decode_full,
                                              decode_sampled, evaluate_generative,
                                              generate_items)
from genret_jax.evaluation.metrics import per_query_metrics, ranking_metrics, sample_negatives
from genret_jax.evaluation.results import results_markdown, write_results

__all__ = ["evaluate_generative", "generate_items", "catalog_trie", "decode_full",
           "decode_sampled", "FullDecode", "per_query_metrics", "ranking_metrics",
           "sample_negatives", "results_markdown", "write_results"]
