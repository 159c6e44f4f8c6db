"""Gen_R+S (Penha et al. 2024): one T5 trained on search + recommendation, atomic IDs.

Default data: the built-in simulator, small enough to run end to end on a laptop CPU.
  python -m genret_jax.main --config=configs/joint.py --workdir=/tmp/genret
"""

from genret_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.name = "joint"
  c.tasks.mixture = "joint"
  c.ids.scheme = "atomic"
  return c
