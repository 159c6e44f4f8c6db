"""Penha et al. 2024 ablation: cap the added task's training examples per item (5/10/50/500).

Rows: Gen_R, Gen_S and Gen_R+S uncapped, then Gen_R+S with the search task
capped (its rec R@30 vs Gen_R) and with the rec task capped (its search R@30
vs Gen_S). Writes table.md / table.json in the workdir.
  python -m genret_jax.main --config=configs/paper/cap.py --workdir=/tmp/cap
"""

from genret_jax.config import load_sibling

joint = load_sibling(__file__, "../joint.py")

CAPS = (5, 10, 50, 500)


def get_config():
  c = joint.get_config()
  c.name = "cap_ablation"
  c.baselines = ""
  c.analyses = ""
  c.table.kind = "table"
  c.table.title = "Per-item cap on the added task: Recall@30 (mean ± std over seeds)"
  c.table.datasets = "simulated,ml-latest-small"
  c.table.seeds = 3
  c.table.metrics = "rec/recall@30,search/recall@30"
  c.table.reference = "rec:Gen_R,search:Gen_S"
  variants = ["base="]
  rows = ["Gen_R+S"]
  for behaviour in ("search", "rec"):
    for cap in CAPS:
      name = f"{behaviour}_cap{cap}"
      variants.append(f"{name}=models=joint;tasks.cap_behaviour={behaviour};"
                      f"tasks.cap_per_item={cap}")
      rows.append(f"Gen_R+S {name}")
  c.table.variants = ",".join(variants)
  c.table.compare = ",".join(rows)
  return c
