"""The base experiment config. `configs/*.py` start from `get_base_config()`.

Each block's defaults live beside the code that reads them. ConfigDicts are
locked, so `--config.foo=1` for a key that does not exist is an error.

Job keys (read by genret_jax.pipeline):
  models     comma list of 'label[:mixture[:key=value...]]' entries, one
             generative model each (trained in workdir/models/<label>);
             '' = one model of tasks.mixture; 'none' = no generative model (the
             baselines alone). E.g. 'rec_only,search_only,joint' or
             'no_nsqp:gensar:tasks.rates.next_query=0'.
  baselines  comma list of pop, bm25, sasrec.
  analyses   comma list of h1, h2.
  epochs     > 0: train.num_steps = ceil(epochs * training examples / (batch *
             examples per packed row)); 0 = train.num_steps as set.
  validation every `validation.every_epochs` epochs (with `epochs` > 0):
             retrieval on VALIDATION events through the decoder; the best
             checkpoint is kept and evaluated, early stopping after
             `train.patience` validations without a better one
             (genret_jax.pipeline.validation).
  jax_cache_dir  the persistent compilation cache (see get_base_config).
  table      paper-table runs (configs/paper/*): see genret_jax.pipeline.tables.

Scale (`--config.scale=smoke|cpu|paper`): `resolve` sets the sizes of that
scale (SCALES) on every key still at its `cpu` default, so values a config
file or a command-line override changes win over the scale.
  smoke: seconds per job (tests).
  cpu:   the defaults, sized for a 2-core CPU (each paper table < 2 hours).
  paper: published settings (Flan-T5-base size, 5 epochs, batch 128, beam 30).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import ml_collections

from genret_jax.data import config as data_config
from genret_jax.decoding import config as decoding_config
from genret_jax.errors import ConfigError
from genret_jax.ids import config as ids_config
from genret_jax.model import config as model_block
from genret_jax.tasks import config as tasks_config
from genret_jax.train import config as train_config

SCALE_NAMES = ("smoke", "cpu", "paper")

SCALES: dict[str, dict[str, object]] = {
    "smoke": {
        "data.simulator.num_items": 160, "data.simulator.num_users": 100,
        "data.simulator.events_per_user": 8, "data.simulator.num_clusters": 8,
        "vocab.sp_vocab_size": 400, "tasks.max_input_length": 64,
        "ids.semantic.dim": 16, "ids.sasrec.dim": 16, "ids.sasrec.epochs": 2,
        "ids.sasrec.eval_every": 1,
        "ids.rq_kmeans.codebook_size": 8, "ids.rq_kmeans.iterations": 5,
        "ids.rq_vae.codebook_size": 8, "ids.rq_vae.epochs": 4, "ids.rq_vae.hidden": (32,),
        "ids.rq_vae.latent_dim": 8, "ids.rq_vae.reseed_every": 2,
        "ids.gensar.codebook_size": 8, "ids.gensar.epochs": 4, "ids.gensar.hidden": (32,),
        "ids.gensar.latent_dim": 8, "ids.gensar.eval_every": 2,
        "ids.gensar.collision_rounds": 2,
        "epochs": 0.0, "train.num_steps": 12, "train.batch_size": 16, "train.warmup_steps": 2,
        "train.log_every": 6, "train.checkpoint_every": 0,
        "analysis.tsne_items": 60, "analysis.tsne_iter": 250,
    },
    "cpu": {},
    "paper": {
        "model.size": "base", "tasks.prompt_style": "full", "tasks.history_separator": "; ",
        "model.dropout_rate": 0.1,
        "train.learning_rate": 1e-3, "train.schedule": "cosine", "epochs": 5.0, "train.batch_size": 128,
        "train.checkpoint_every": 1000, "train.log_every": 100,
        "decode.beam_size": 30, "decode.num_groups": 30,
        "ids.sasrec.epochs": 200, "ids.sasrec.eval_every": 20, "ids.sasrec.max_len": 50,
        "ids.rq_vae.epochs": 500, "ids.gensar.epochs": 500, "ids.rq_kmeans.iterations": 100,
        "analysis.tsne_items": 2000,
    },
}


def analysis_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.h1_top_k = 1              # predicted items per query counted by H1
  c.h2_k = 10                 # neighbours per item compared by H2
  c.tsne_items = 1000         # items in the H2 t-SNE plot
  c.tsne_iter = 1000          # t-SNE optimisation steps (>= 250)
  return c


def validation_config() -> ml_collections.ConfigDict:
  """Validation retrieval during training (genret_jax.pipeline.validation)."""
  c = ml_collections.ConfigDict()
  c.every_epochs = 1.0        # validation retrieval every this many epochs (needs `epochs`
                              # > 0); 0 = off (train.num_steps / the last checkpoint)
  c.max_queries = 500         # validation events per task decoded each time (a seeded
                              # subset, eval.queries_seed); 0 = all
  c.min_every_steps = 20      # validations at least this many steps apart (small data)
  return c


def table_config() -> ml_collections.ConfigDict:
  """A paper table: rows = the job's models and baselines, columns = datasets x metrics."""
  c = ml_collections.ConfigDict()
  c.kind = ""                 # '' = a single job | table | sweep
  c.title = ""
  c.datasets = "simulated"    # comma list: simulated, ml-latest-small, amazon-beauty, lastfm-2k
  c.data_root = ""            # folder of the real datasets; '' = $GENRET_DATA or ../shared/data
  c.seeds = 1                 # seeds 0 .. seeds-1 (data split, negatives and training)
  c.metrics = "rec/recall@30,search/recall@30"   # columns per dataset: task/metric
  c.reference = "rec:Gen_R,search:Gen_S"         # task -> model the t-test compares with
  c.compare = "Gen_R+S"       # models marked against the reference
  # kind=sweep: one job per value of `knob` (a dotted config key) per seed;
  # plots `metrics` vs the knob, one line per model.
  c.knob = ""
  c.knob_values = ""          # comma list of knob values
  # kind=table with `variants`: one job per variant, each a ';'-separated
  # list of key=value overrides, its rows named '<model> <variant>'.
  c.variants = ""             # comma list of 'name=key=value;key=value'
  return c


def get_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = "joint"
  c.seed = 0
  c.scale = "cpu"             # smoke | cpu | paper
  c.models = ""               # see the module docstring
  c.baselines = ""
  c.analyses = ""
  c.epochs = 20.0             # maximum; validation usually stops training earlier
  # Persistent XLA compilation cache: a folder relative to the workdir (or an
  # absolute path), shared by the job's models and a table's rows, so programs
  # of the same shapes compile once; '' = off. JAX_COMPILATION_CACHE_DIR wins.
  c.jax_cache_dir = "jax_cache"
  # Per-config sizes of each scale, applied after SCALES whatever the current
  # value: ';'-separated key=value (e.g. paper: 'model.size=small').
  c.scale_overrides = ml_collections.ConfigDict({s: "" for s in SCALE_NAMES})
  c.validation = validation_config()
  c.analysis = analysis_config()
  c.table = table_config()
  c.data = data_config.default_config()
  c.vocab = tasks_config.vocab_config()
  c.tasks = tasks_config.default_config()
  c.ids = ids_config.default_config()
  c.model = model_block.default_config()
  c.mesh = model_block.mesh_config()
  c.train = train_config.default_config()
  c.decode = decoding_config.default_config()
  c.eval = decoding_config.eval_config()
  return c


def data_root(config: ml_collections.ConfigDict) -> str:
  """The folder of the real datasets: `table.data_root`, else $GENRET_DATA, else the
  `shared/data` folder beside the repository."""
  if config.table.data_root:
    return str(config.table.data_root)
  repo = pathlib.Path(__file__).resolve().parents[1]
  return os.environ.get("GENRET_DATA", str(repo.parent / "shared" / "data"))


def load_sibling(here: str, relative: str):
  """The module of the config file at `relative` to the file `here` (configs/paper/*
  build on configs/*.py without `configs` having to be importable)."""
  path = os.path.normpath(os.path.join(os.path.dirname(here), relative))
  spec = importlib.util.spec_from_file_location(
      "genret_config_" + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# Keys that name what to run, not how a model is built / trained / evaluated.
JOB_KEYS = ("name", "models", "baselines", "analyses", "table", "scale", "scale_overrides",
            "jax_cache_dir")


def split_list(text: str) -> list[str]:
  return [t.strip() for t in str(text).split(",") if t.strip()]


def set_dotted(config: ml_collections.ConfigDict, key: str, text: str, where: str) -> None:
  node = config
  parts = key.split(".")
  for p in parts[:-1]:
    if p not in node or not isinstance(node[p], ml_collections.ConfigDict):
      raise ConfigError(where, f"{key!r} is not a config key")
    node = node[p]
  if parts[-1] not in node:
    raise ConfigError(where, f"{key!r} is not a config key")
  old = node[parts[-1]]
  try:
    if isinstance(old, bool):
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(text)
      value = text.lower() in ("true", "1")
    elif isinstance(old, (int, float, str)):
      value = type(old)(text)
    elif isinstance(old, tuple):
      value = tuple(type(old[0])(v) if old else v for v in text.split("/") if v)
    else:
      raise ValueError(f"cannot override a {type(old).__name__}")
  except ValueError as e:
    raise ConfigError(where, f"{key}={text!r}: {e}") from None
  node[parts[-1]] = value


def parse_model(entry: str) -> tuple[str, str, list[tuple[str, str]]]:
  """'label[:mixture[:key=value...]]' -> (label, mixture, [(key, value)])."""
  parts = entry.split(":")
  label = parts[0]
  mixture = parts[1] if len(parts) > 1 and parts[1] else label
  overrides = []
  for p in parts[2:]:
    if "=" not in p:
      raise ConfigError("models", f"{entry!r}: override {p!r} is not key=value")
    k, v = p.split("=", 1)
    overrides.append((k.strip(), v.strip()))
  return label, mixture, overrides


def model_entries(config: ml_collections.ConfigDict) -> list[str]:
  """The `models` entries; '' = the one model of `tasks.mixture`, 'none' = no model."""
  if str(config.models).strip() == "none":
    return []
  return split_list(config.models) or [config.tasks.mixture]


def model_config(config: ml_collections.ConfigDict, entry: str
                 ) -> tuple[str, ml_collections.ConfigDict]:
  """(label, config of one model): tasks.mixture and the entry's overrides set."""
  label, mixture, overrides = parse_model(entry)
  if mixture not in tasks_config.MIXTURES:
    raise ConfigError("models", f"{entry!r}: mixture {mixture!r} is not one of {tasks_config.MIXTURES}")
  c = ml_collections.ConfigDict(config.to_dict())
  c.tasks.mixture = mixture
  c.name = label
  for k, v in overrides:
    set_dotted(c, k, v, "models")
  c.lock()
  return label, c


def _get(c: ml_collections.ConfigDict, key: str):
  for p in key.split("."):
    c = c[p]
  return c


def set_key(c: ml_collections.ConfigDict, key: str, value) -> None:
  """Sets the dotted `key` of `c` to the typed `value` (set_dotted parses text)."""
  *head, last = key.split(".")
  for p in head:
    c = c[p]
  c[last] = value


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A locked copy of `config` with the sizes of `config.scale` applied.

  A scale size is applied to a key only while that key holds its `cpu`
  (get_base_config) default. Raises ConfigError for an unknown scale or a
  malformed job key.
  """
  if config.scale not in SCALE_NAMES:
    raise ConfigError("scale", f"{config.scale!r} is not one of {SCALE_NAMES}")
  out = ml_collections.ConfigDict(config.to_dict())
  base = get_base_config()
  for key, value in SCALES[config.scale].items():
    if _get(out, key) == _get(base, key):
      set_key(out, key, value)
  for item in str(out.scale_overrides[config.scale]).split(";"):
    if item.strip():
      if "=" not in item:
        raise ConfigError(f"scale_overrides.{config.scale}", f"{item!r} is not key=value")
      key, value = item.split("=", 1)
      set_dotted(out, key.strip(), value.strip(), f"scale_overrides.{config.scale}")
  validate(out)
  out.lock()
  return out


def validate_blocks(config: ml_collections.ConfigDict) -> None:
  """Runs every block's own validator (data, vocab, tasks, ids, model, mesh, train,
  decode, eval): ConfigError naming the first bad key, before any work."""
  # The validators' modules import TensorFlow and seqio; configs/*.py import this
  # module while flags are parsed, before main starts JAX and TF, so it stays light.
  # pylint: disable=g-import-not-at-top
  from genret_jax.data import prepare
  from genret_jax.ids import build
  from genret_jax.model import builder, partitioning
  from genret_jax.tasks import registry
  from genret_jax.train import trainer
  # pylint: enable=g-import-not-at-top
  prepare.validate(config)                  # data + vocab
  registry.validate(config)                 # tasks
  build.validate(config)                    # ids (the .npy files are checked with the data)
  builder.validate(config.model)
  trainer.validate(config, partitioning.make_mesh(config.mesh))   # train (+ mesh)
  decoding_config.validate(config.decode, config.eval)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the job keys, then every block of the job and of each model's config
  (`models` entries may override any key) with `validate_blocks`."""
  validate_blocks(config)
  for entry in model_entries(config):
    validate_blocks(model_config(config, entry)[1])
  labels = [parse_model(e)[0] for e in model_entries(config)]
  if len(set(labels)) != len(labels):
    raise ConfigError("models", f"duplicate model labels in {labels}")
  # The registries import JAX and TensorFlow; `import genret_jax.config` stays light.
  # pylint: disable=g-import-not-at-top
  from genret_jax.analysis.registry import ANALYSES
  from genret_jax.baselines.registry import BASELINES
  # pylint: enable=g-import-not-at-top
  for key, known in (("baselines", BASELINES), ("analyses", ANALYSES)):
    bad = [name for name in split_list(config[key]) if name not in known]
    if bad:
      raise ConfigError(key, f"{bad} not in {tuple(known)}")
  if config.epochs < 0:
    raise ConfigError("epochs", f"must be >= 0, got {config.epochs}")
  v = config.validation
  if not v.every_epochs >= 0:
    raise ConfigError("validation.every_epochs", f"must be >= 0, got {v.every_epochs}")
  for key in ("max_queries", "min_every_steps"):
    if int(v[key]) < 0:
      raise ConfigError(f"validation.{key}", f"must be >= 0, got {v[key]}")
  t = config.table
  if t.kind not in ("", "table", "sweep"):
    raise ConfigError("table.kind", f"{t.kind!r} is not '', 'table' or 'sweep'")
  if t.kind and t.seeds < 1:
    raise ConfigError("table.seeds", f"must be >= 1, got {t.seeds}")
  if t.kind == "sweep" and (not t.knob or not split_list(t.knob_values)):
    raise ConfigError("table.knob", "a sweep needs table.knob and table.knob_values")
