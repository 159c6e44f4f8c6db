"""Penha et al. 2024 simulator sweep S2: R@30 of Gen_R, Gen_S, Gen_R+S vs data.simulator.matching_queries.

The knob: fraction of queries whose items share one rec cluster (tests H2). One job per value per seed; writes
sweep_rec_recall@30.png / sweep_search_recall@30.png (+ .json) in the workdir.
  python -m genret_jax.main --config=configs/paper/sweep_s2.py --workdir=/tmp/s2
"""

from genret_jax.config import load_sibling

joint = load_sibling(__file__, "../joint.py")


def get_config():
  c = joint.get_config()
  c.name = "sweep_s2"
  c.baselines = ""
  c.analyses = ""
  c.table.kind = "sweep"
  c.table.title = "S2: matching_queries"
  c.table.datasets = "simulated"
  c.table.seeds = 3
  c.table.knob = "data.simulator.matching_queries"
  c.table.knob_values = "0.2,0.5,0.8,1"
  c.table.metrics = "rec/recall@30,search/recall@30"
  return c
