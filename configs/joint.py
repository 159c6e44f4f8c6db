"""The main job of Penha et al. 2024: Gen_R+S vs Gen_R vs Gen_S vs the baselines.

Trains the three generative models (atomic IDs, shared item tokens) on the
built-in simulator, evaluates them with Pop_R, Pop_S, BM25 and SASRec, runs
the H1 / H2 analyses and writes results.md, results.json and plots/*.png.
  python -m genret_jax.main --config=configs/joint.py --workdir=/tmp/genret
Only Gen_R+S: --config.models=joint. Real data: --config.data.source=movielens
--config.data.path=../shared/data/ml-latest-small.
"""

from genret_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.name = "joint"
  c.tasks.mixture = "joint"
  c.ids.scheme = "atomic"
  c.models = "rec_only,search_only,joint"
  c.baselines = "pop,bm25,sasrec"
  c.analyses = "h1,h2"
  return c
