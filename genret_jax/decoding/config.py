"""Defaults of the `decode` and `eval` config blocks (owned by genret_jax.decoding)."""

from __future__ import annotations

import ml_collections
import numpy as np

from genret_jax.errors import ConfigError

MODES = ("constrained", "unconstrained", "diverse")
PROTOCOLS = ("full", "sampled", "both")


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.beam_size = 30
  c.mode = "constrained"      # constrained | unconstrained | diverse
  c.num_groups = 30           # diverse mode: beam groups (beam_size % num_groups == 0)
  c.diversity_penalty = 0.25  # diverse mode: Hamming penalty (Penha et al. 2025: 60/30/0.25)
  c.batch_size = 64           # queries per decoding call (padded; sharded on 'data')
  c.dense_max_mb = 8.0        # a trie level above this many MiB dense is stored as CSR
  return c


def eval_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.ks = (1, 5, 10, 20, 30)
  c.protocol = "full"         # full | sampled | both
  c.num_negatives = 99        # sampled protocol: negatives per query (+ the positive)
  c.negatives_seed = 0
  c.best_metric = "ndcg@10"   # validation metric that selects the best checkpoint and
                              # stops training (recall@10 saturates while the top ranks
                              # still improve; docs/training.md)
  c.max_queries = 0           # test queries per task (a seeded random subset shared by
                              # every model and baseline); 0 = all
  c.queries_seed = 0
  return c


def validate(decode: ml_collections.ConfigDict, evaluation: ml_collections.ConfigDict) -> None:
  """Checks the `decode` and `eval` blocks; raises ConfigError naming the key."""
  if decode.mode not in MODES:
    raise ConfigError("decode.mode", f"{decode.mode!r} is not one of {MODES}")
  if decode.beam_size < 1:
    raise ConfigError("decode.beam_size", f"must be >= 1, got {decode.beam_size}")
  if decode.batch_size < 1:
    raise ConfigError("decode.batch_size", f"must be >= 1, got {decode.batch_size}")
  if decode.dense_max_mb < 0:
    raise ConfigError("decode.dense_max_mb", f"must be >= 0, got {decode.dense_max_mb}")
  if decode.mode == "diverse":
    if decode.num_groups < 1 or decode.beam_size % decode.num_groups:
      raise ConfigError("decode.num_groups", f"{decode.num_groups} must divide "
                        f"decode.beam_size={decode.beam_size}")
    if decode.diversity_penalty < 0:
      raise ConfigError("decode.diversity_penalty",
                        f"must be >= 0, got {decode.diversity_penalty}")
  ks = tuple(evaluation.ks)
  if not ks or any(int(k) != k or k < 1 for k in ks):
    raise ConfigError("eval.ks", f"must be positive integers, got {ks}")
  if evaluation.protocol not in PROTOCOLS:
    raise ConfigError("eval.protocol", f"{evaluation.protocol!r} is not one of {PROTOCOLS}")
  if evaluation.max_queries < 0:
    raise ConfigError("eval.max_queries", f"must be >= 0, got {evaluation.max_queries}")
  if evaluation.num_negatives < 1:
    raise ConfigError("eval.num_negatives", f"must be >= 1, got {evaluation.num_negatives}")
  names = {"mrr"} | {f"{m}@{k}" for m in ("recall", "hr", "ndcg") for k in ks}
  if evaluation.best_metric not in names:
    raise ConfigError("eval.best_metric",
                      f"{evaluation.best_metric!r} is not one of {sorted(names)}")


def query_subset(num_queries: int, evaluation: ml_collections.ConfigDict) -> np.ndarray:
  """Sorted int64 indices of the test queries to evaluate (all when max_queries is 0).

  A function of (num_queries, eval.max_queries, eval.queries_seed) only, so the
  generative models and the baselines, which list a task's test events in the
  same order, evaluate the same queries.
  """
  limit = int(evaluation.max_queries)
  if limit <= 0 or num_queries <= limit:
    return np.arange(num_queries)
  rng = np.random.default_rng([int(evaluation.queries_seed), num_queries])
  return np.sort(rng.choice(num_queries, size=limit, replace=False))
