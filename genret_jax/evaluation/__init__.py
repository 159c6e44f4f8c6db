"""genret_jax.evaluation: retrieval metrics, the one-call generative evaluation, results files."""

from genret_jax.evaluation.generative import evaluate_generative, generate_items
from genret_jax.evaluation.metrics import per_query_metrics, ranking_metrics, sample_negatives
from genret_jax.evaluation.results import results_markdown, write_results

__all__ = ["evaluate_generative", "generate_items", "per_query_metrics", "ranking_metrics",
           "sample_negatives", "results_markdown", "write_results"]
