"""Gen_R (Penha et al. 2024): recommendation only, atomic IDs, with Pop_R / Pop_S and SASRec.

Default data: the built-in simulator, small enough to run end to end on a laptop CPU.
  python -m genret_jax.main --config=configs/rec.py --workdir=/tmp/genret
"""

from genret_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.name = "rec"
  c.tasks.mixture = "rec_only"
  c.ids.scheme = "atomic"
  c.models = "rec_only"
  c.baselines = "pop,sasrec"
  c.analyses = "h1,h2"
  return c
