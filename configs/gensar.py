"""GenSAR (Shi et al. 2025): dual semantic / collaborative IDs, all GenSAR tasks, behaviour tokens.

One T5 trained on NRIP (history -> <rec_item> + collaborative ID), NSIP
(history + query -> <src_item> + semantic ID), NSQP (next query) and the
ID <-> text alignment tasks; evaluated with HR@1/5/10 and NDCG@5/10 in the
sampled 1 + 99 protocol and on the full catalog (eval.protocol = both).
--config.tasks.behaviour_tokens=false: the ablation without behaviour tokens.
Default data: the simulator; the paper's setting on Amazon:
  python -m genret_jax.main --config=configs/gensar.py --workdir=/tmp/gensar \\
    --config.data.source=amazon --config.data.path=../shared/data/amazon-beauty
"""

from genret_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.name = "gensar"
  c.tasks.mixture = "gensar"
  c.ids.scheme = "gensar"
  c.models = "gensar"
  c.baselines = "pop,bm25,sasrec"
  c.analyses = "h1"
  c.eval.protocol = "both"
  c.eval.ks = (1, 5, 10)
  c.eval.best_metric = "hr@10"
  c.scale_overrides.paper = "model.size=small;train.learning_rate=0.001"
  return c
