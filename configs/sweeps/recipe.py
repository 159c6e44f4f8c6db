"""The training-recipe sweep (issue 14): each row changes one thing of the cpu default.

Gen_R and Gen_S (atomic IDs, trained by epochs with validation, best checkpoint,
early stopping) on the simulator and ml-latest-small, beside Pop_R / Pop_S.
Variants: the old default (lr 1e-3 cosine to 0, dropout 0.1, GenSAR's full
prompt, 8 target tokens; still trained by epochs with validation), learning rate, schedule, warmup, dropout, label smoothing, tied output
head, batch size, the prompt style, and the validation metric and patience that pick the
checkpoint. Writes table.md / table.json.
  python -m genret_jax.main --config=configs/sweeps/recipe.py --workdir=/tmp/recipe
One dataset: --config.table.datasets=simulated. Every finished job is reused on a rerun.
"""

from genret_jax.config import load_sibling

joint = load_sibling(__file__, "../joint.py")

VARIANTS = {        # in order of interest: a partial run still answers the main questions
    "base": "",
    "old_default": "train.learning_rate=0.001;train.schedule=cosine;model.dropout_rate=0.1;"
                   "tasks.prompt_style=full;tasks.max_target_length=8",
    "prompt_full": "tasks.prompt_style=full",
    "prompt_none": "tasks.prompt_style=none",
    "dropout_0.1": "model.dropout_rate=0.1",
    "lr_1e-3": "train.learning_rate=0.001",
    "cosine": "train.schedule=cosine",
    "lr_1e-2": "train.learning_rate=0.01",
    "cosine_floor_0.1": "train.schedule=cosine;train.cosine_end_factor=0.1",
    "rsqrt": "train.schedule=rsqrt",
    "warmup_200": "train.warmup_steps=200",
    "label_smoothing_0.1": "train.label_smoothing=0.1",
    "tied_head": "model.logits_via_embedding=true",
    "batch_32": "train.batch_size=32",
    "batch_128": "train.batch_size=128",
    "select_recall@10": "eval.best_metric=recall@10",
    "patience_5": "train.patience=5",
}


def get_config():
  c = joint.get_config()
  c.name = "recipe_sweep"
  c.models = "rec_only,search_only"
  c.baselines = "pop"
  c.analyses = ""
  c.table.kind = "table"
  c.table.title = "Training recipe: one change from the cpu default per row"
  c.table.datasets = "simulated,ml-latest-small"
  c.table.seeds = 1
  c.table.metrics = "rec/recall@1,rec/recall@10,search/recall@1,search/recall@10"
  c.table.reference = "rec:Gen_R,search:Gen_S"
  c.table.compare = ""
  c.table.variants = ",".join(f"{k}={v}" for k, v in VARIANTS.items())
  # ml-latest-small: 1,000 seeded test queries per task, like configs/paper/penha.py.
  c.scale_overrides.cpu = "eval.max_queries=1000"
  return c
