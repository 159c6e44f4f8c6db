"""TIGER (Rajput et al. 2023): semantic-ID Gen_R on Amazon Beauty, TIGER protocol.

Leave-one-out split, full-catalog ranking, R@5/10 and N@5/10; RQ-VAE IDs
(3 x 256 + a dedup level; --config.ids.scheme=rq_kmeans for RQ-KMeans).
Published: R@5 .0454, N@5 .0321, R@10 .0648, N@10 .0384 (SASRec R@10 .0605).
  python -m genret_jax.main --config=configs/tiger.py --workdir=/tmp/tiger
The data folder defaults to $GENRET_DATA/amazon-beauty (or ../shared/data).
"""

import os

from genret_jax.config import get_base_config
from genret_jax.pipeline.tables import data_root


def get_config():
  c = get_base_config()
  c.name = "tiger"
  c.data.source = "amazon"
  c.data.path = os.path.join(data_root(c), "amazon-beauty")
  c.tasks.mixture = "rec_only"
  c.ids.scheme = "rq_vae"
  c.models = "rec_only"
  c.baselines = "pop,sasrec"
  c.analyses = "h1"
  c.eval.ks = (5, 10)
  c.eval.best_metric = "recall@10"
  c.model.dropout_rate = 0.1
  # TIGER's 4+4 layers, d_model 128, 6 heads x 64, MLP 1024 needs per-dimension
  # model keys; until the model block has them the nearest named size is used.
  c.scale_overrides.paper = "model.size=small"
  return c
