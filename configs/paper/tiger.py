"""TIGER (Rajput et al. 2023) on Amazon Beauty: R@5/10, N@5/10 of semantic-ID Gen_R.

Rows: Gen_R with RQ-VAE IDs (TIGER) and with RQ-KMeans IDs, Pop_R, SASRec.
Published: TIGER R@5 .0454, N@5 .0321, R@10 .0648, N@10 .0384; SASRec R@5
.0387, R@10 .0605. Writes table.md in the workdir.
  python -m genret_jax.main --config=configs/paper/tiger.py --workdir=/tmp/tiger_table
"""

from genret_jax.config import load_sibling

tiger = load_sibling(__file__, "../tiger.py")


def get_config():
  c = tiger.get_config()
  c.name = "tiger_table"
  c.analyses = ""
  c.baselines = "pop,sasrec"
  c.table.kind = "table"
  c.table.title = ("TIGER protocol on Amazon Beauty (published TIGER R@5 .0454 N@5 .0321 "
                   "R@10 .0648 N@10 .0384; SASRec R@10 .0605)")
  c.table.datasets = "amazon-beauty"
  c.table.seeds = 3
  c.table.metrics = "rec/recall@5,rec/ndcg@5,rec/recall@10,rec/ndcg@10"
  c.table.reference = "rec:SASRec"
  c.table.variants = "rq_vae=ids.scheme=rq_vae,rq_kmeans=ids.scheme=rq_kmeans;baselines="
  c.table.compare = "Gen_R rq_vae,Gen_R rq_kmeans"
  return c
