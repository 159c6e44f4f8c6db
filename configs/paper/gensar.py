"""GenSAR (Shi et al. 2025) table with its ablations: HR@1/5/10, NDCG@5/10.

Both protocols (sampled 1 + 99: `sampled_*` columns; full catalog). Rows:
GenSAR, then without NRIP (rec), NSIP (search), NSQP (next query), the
ID <-> text alignment tasks and the behaviour tokens (tasks.behaviour_tokens:
none in inputs or targets, none forced first at decode), each marked against
GenSAR; then the baselines Pop_R, Pop_S, BM25 (search) and SASRec (rec), run
once per seed in the base job and scored in both protocols on the same
candidates. Writes table.md.
  python -m genret_jax.main --config=configs/paper/gensar.py --workdir=/tmp/gensar_table
"""

from genret_jax.config import load_sibling

gensar = load_sibling(__file__, "../gensar.py")

_METRICS = ("sampled_hr@1", "sampled_hr@5", "sampled_hr@10", "sampled_ndcg@5",
            "sampled_ndcg@10", "hr@10", "ndcg@10")
ABLATIONS = {
    "w/o NRIP": "tasks.rates.gensar_rec=0",
    "w/o NSIP": "tasks.rates.gensar_search=0",
    "w/o NSQP": "tasks.rates.next_query=0",
    "w/o alignment": "tasks.rates.text2id=0;tasks.rates.id2text=0",
    "w/o behaviour tokens": "tasks.behaviour_tokens=False",
}


def get_config():
  c = gensar.get_config()
  c.name = "gensar_table"
  c.baselines = "pop,bm25,sasrec"     # base variant only (the ablations set baselines=)
  c.analyses = ""
  c.table.kind = "table"
  c.table.title = "GenSAR: sampled 1+99 and full-catalog metrics (mean ± std over seeds)"
  c.table.datasets = "amazon-beauty"
  c.table.seeds = 3
  c.table.metrics = ",".join(f"{t}/{m}" for t in ("rec", "search") for m in _METRICS)
  c.table.reference = "rec:GenSAR,search:GenSAR"
  c.table.variants = ",".join(["base="] + [f"{k}={v};baselines=" for k, v in ABLATIONS.items()])
  c.table.compare = ",".join(f"GenSAR {k}" for k in ABLATIONS)
  return c
