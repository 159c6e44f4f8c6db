"""Gen_S (Penha et al. 2024): search only, atomic IDs, with Pop_R / Pop_S and BM25.

Default data: the built-in simulator, small enough to run end to end on a laptop CPU.
  python -m genret_jax.main --config=configs/search.py --workdir=/tmp/genret
"""

from genret_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.name = "search"
  c.tasks.mixture = "search_only"
  c.ids.scheme = "atomic"
  c.models = "search_only"
  c.baselines = "pop,bm25"
  c.analyses = "h1,h2"
  return c
