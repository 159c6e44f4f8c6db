"""Penha et al. 2024 table: Pop_R, Pop_S, SASRec, BM25, Gen_R, Gen_S, Gen_R+S, R@30 per task.

Datasets ml-latest-small, amazon-beauty and the simulator, 5 seeds; Gen_R+S
is marked against Gen_R (rec) and Gen_S (search) by a paired t-test over seeds.
  python -m genret_jax.main --config=configs/paper/penha.py --workdir=/tmp/penha \\
    --config.scale=cpu
Writes table.md / table.json in the workdir.
"""

from genret_jax.config import load_sibling

joint = load_sibling(__file__, "../joint.py")


def get_config():
  c = joint.get_config()
  c.name = "penha2024"
  c.analyses = ""
  c.table.kind = "table"
  c.table.title = "Penha et al. 2024: Recall@30 (mean ± std over seeds)"
  c.table.datasets = "ml-latest-small,amazon-beauty,simulated"
  c.table.seeds = 5
  c.table.metrics = "rec/recall@30,search/recall@30"
  c.table.reference = "rec:Gen_R,search:Gen_S"
  c.table.compare = "Gen_R+S"
  # A 2-core CPU evaluates 1,000 seeded test queries per task (the same ones
  # for every model, baseline and seed; Amazon Beauty has 22,363 per task).
  c.scale_overrides.cpu = "eval.max_queries=1000"
  return c
