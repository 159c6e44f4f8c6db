"""Penha et al. 2024 simulator sweep S1: R@30 of Gen_R, Gen_S, Gen_R+S vs data.simulator.popularity_kl.

The knob: KL between the tasks' item-popularity distributions (tests H1). One job per value per seed; writes
sweep_rec_recall@30.png / sweep_search_recall@30.png (+ .json) in the workdir.
  python -m genret_jax.main --config=configs/paper/sweep_s1.py --workdir=/tmp/s1
"""

from genret_jax.config import load_sibling

joint = load_sibling(__file__, "../joint.py")


def get_config():
  c = joint.get_config()
  c.name = "sweep_s1"
  c.baselines = ""
  c.analyses = ""
  c.table.kind = "sweep"
  c.table.title = "S1: popularity_kl"
  c.table.datasets = "simulated"
  c.table.seeds = 3
  c.table.knob = "data.simulator.popularity_kl"
  c.table.knob_values = "0,0.5,1,2"
  c.table.metrics = "rec/recall@30,search/recall@30"
  return c
