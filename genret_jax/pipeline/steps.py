"""prepare -> ids -> train -> eval of the generative models.

Every model of `config.models` trains in `{workdir}/models/<label>/` on the
shared `{workdir}/prepared` data and `{workdir}/ids` identifiers. Eval writes
`{workdir}/models/<label>/eval.json` (metrics per task, stamped with the
model config and checkpoint step) and `predictions_<task>.npz` (items
int32[Q, R] ranked, -1 padded; targets int32[Q]) for the analyses.
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np

from genret_jax import cache, tasks
from genret_jax.data import prepare, prepared
from genret_jax.decoding import config as decoding_config
from genret_jax.errors import ConfigError, DataError
from genret_jax.evaluation import collapse, generative
from genret_jax.ids import build
from genret_jax.model import partitioning
from genret_jax.pipeline import common, validation
from genret_jax.tasks import vocab as vocab_lib
from genret_jax.train import trainer


def prepared_path(workdir: str) -> str:
  return os.path.join(workdir, "prepared")


def run_prepare(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Process 0 writes the prepared dataset; the others wait, then read it."""
  path = prepared_path(workdir)
  if common.is_writer():
    path = prepare.prepare(config, workdir, sp_model=vocab_lib.sentencepiece_model(config))
  common.barrier("genret_prepare")
  return path


def _manifest(workdir: str) -> dict:
  """The verified manifest of the job's prepared dataset (files checked against it)."""
  path = prepared_path(workdir)
  if prepared.read_manifest(path) is None:
    raise ConfigError("workdir", f"{path} holds no prepared dataset; run --mode=prepare")
  return prepared.verify(path)


def check_prepared(workdir: str) -> None:
  """DataError naming the file when the prepared dataset a step reuses is damaged."""
  _manifest(workdir)


def ids_stamp(config: ml_collections.ConfigDict, workdir: str) -> str:
  return common.stamp({"ids": config.ids, "data": _manifest(workdir).get("content_hash")})


IDS_RECORD = "files.json"   # beside ids/<scheme>/stamp: size + sha256 of the saved files


def _ids_reusable(folder: str, want: str) -> bool:
  """Whether ids/<scheme> holds identifiers of stamp `want` whose files match their
  record; a damaged folder is rebuilt, with a warning naming the file."""
  try:
    with open(os.path.join(folder, "stamp")) as f:
      if f.read() != want:
        return False
  except OSError:
    return False
  record = common.read_json_or_none(os.path.join(folder, IDS_RECORD))
  record = record if isinstance(record, dict) else None
  problem = cache.check_files(folder, record, IDS_RECORD) if record else None
  if problem is None and record is None:   # a workdir from before records: try to load
    try:
      build.load_identifiers(os.path.dirname(os.path.dirname(folder)), os.path.basename(folder))
    except DataError as e:
      problem = ("ids", e.message)
  if problem:
    cache.warn(f"{os.path.join(folder, problem[0])}: {problem[1]}; rebuilding the identifiers")
    return False
  return True


def run_ids(config: ml_collections.ConfigDict, workdir: str):
  """Builds (process 0) or reuses the identifiers of config.ids.scheme (reused when the
  stamp matches and the saved files match their size + sha256 record)."""
  folder = os.path.join(workdir, "ids", config.ids.scheme)
  want = ids_stamp(config, workdir)
  if common.is_writer():
    cache.remove_stale(os.path.dirname(folder), ("*.tmp-*", "*.old-*", "*.json.tmp"))
    cache.remove_stale(os.path.join(os.path.dirname(folder), "embeddings"),
                       ("*.tmp.npy", "*.json.tmp"))
  if _ids_reusable(folder, want):
    common.log(f"ids: reusing {folder} (same ids config and data, files verified)")
  elif common.is_writer():
    ds = prepared.load(prepared_path(workdir))
    build.build_identifiers(config, ds.catalog, ds.events, ds.split, workdir)
    common.write_json(os.path.join(folder, IDS_RECORD),
                      cache.record_files(folder, ["ids.json", "ids.npz"]))
    with open(os.path.join(folder, "stamp"), "w") as f:
      f.write(want)
  common.barrier("genret_ids")
  return build.load_identifiers(workdir, config.ids.scheme)


class Context:
  """Per-job caches: identifiers and the registered tasks of each mixture."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.config = config
    self.workdir = workdir
    self._ids = None
    self._tasks: dict[str, dict] = {}

  def set_ids(self, ids) -> None:
    """The identifiers the ids step just built (saves reading them back)."""
    self._ids = ids

  @property
  def ids(self):
    if self._ids is None:
      self._ids = build.load_identifiers(self.workdir, self.config.ids.scheme)
    return self._ids

  def registered(self, mconfig: ml_collections.ConfigDict) -> dict:
    """tasks.register for one model's config (cached by its tasks block)."""
    key = common.stamp(mconfig.tasks, mconfig.vocab)
    if key not in self._tasks:
      self._tasks[key] = tasks.register(mconfig, self.workdir, self.ids)
    return self._tasks[key]


def run_train(ctx: Context, label: str, mconfig: ml_collections.ConfigDict) -> dict:
  reg = ctx.registered(mconfig)
  validate_fn = (validation.make_validator(ctx, mconfig)
                 if mconfig.train.best_metric.startswith("val_") else None)
  result = trainer.train(mconfig, common.model_dir(ctx.workdir, label), mixture_name=reg["mixture"],
                         vocab_size=reg["vocabulary"].vocab_size, validate_fn=validate_fn)
  common.log(f"train {label}: " + trainer.summarize(result))
  return result


def run_eval(ctx: Context, label: str, mconfig: ml_collections.ConfigDict) -> dict:
  """Decodes every eval task's TEST queries of one model; reuses a stamped eval.json.

  Returns {task: {metric: value}} (full protocol names, and 'sampled_*' with
  eval.protocol sampled/both).
  """
  decoding_config.validate(mconfig.decode, mconfig.eval)
  mdir = common.model_dir(ctx.workdir, label)
  step = trainer.selected_step(mconfig, mdir)
  want = common.stamp(common.model_stamp(mconfig), step, ids_stamp(mconfig, ctx.workdir))
  path = os.path.join(mdir, "eval.json")
  cached = common.read_stamped(path, want)
  if cached is not None:
    common.log(f"eval {label}: reusing {path} (same config and checkpoint step {step})")
    return cached
  reg = ctx.registered(mconfig)
  vocab = reg["vocabulary"]
  model, params, step = trainer.restore_params(mconfig, mdir, vocab.vocab_size)
  mesh = partitioning.make_mesh(mconfig.mesh)
  protocol = mconfig.eval.protocol
  out, per_query = {}, {}
  for behaviour, task_name in sorted(reg["eval_tasks"].items()):
    table = ctx.ids.search if behaviour == "search" else ctx.ids.rec
    prefix = reg["eval_prefix"][behaviour]
    arrays = validation.eval_arrays(task_name, mconfig, "test")
    total = len(arrays["target_item"])
    keep = decoding_config.query_subset(total, mconfig.eval)
    arrays = {k: v[keep] for k, v in arrays.items()}
    m: dict[str, float] = {}
    decode_kwargs = validation.decode_kwargs(mconfig, mesh)
    if protocol in ("full", "both"):
      trie = validation.full_trie(table, vocab, prefix, mconfig, mesh)
      m, pq, items = generative.decode_full(model, params, arrays["inputs"],
                                            arrays["target_item"], trie, **decode_kwargs)
      per_query[behaviour] = pq
      m.update(collapse.top1_stats(items))
      if common.is_writer():
        np.savez(os.path.join(mdir, f"predictions_{behaviour}.npz"), items=items,
                 targets=arrays["target_item"])
    if protocol in ("sampled", "both"):
      item_tokens = table.codes + np.asarray(vocab.level_offsets(table), np.int32)
      sm = generative.decode_sampled(
          model, params, arrays["inputs"], arrays["target_item"], item_tokens,
          arrays["candidates"], prefix_tokens=[vocab.token_id(prefix)] if prefix else [],
          **decode_kwargs)
      m.update({"sampled_" + k: v for k, v in sm.items()})
    m["num_queries"] = float(len(arrays["target_item"]))
    m["num_test_queries"] = float(total)
    out[behaviour] = m
    common.log(f"eval {common.display_name(label)} {behaviour} (step {step}, "
               f"{len(arrays['target_item'])} queries): "
               + ", ".join(f"{k}={v:.4f}" for k, v in m.items() if "@" in k or k == "mrr"))
  if common.is_writer():
    if per_query:
      np.savez(os.path.join(mdir, "per_query.npz"),
               **{f"{b}/{k}": v for b, pq in per_query.items() for k, v in pq.items()})
    common.write_stamped(path, want, out)
  return out


def eval_stamp(workdir: str, label: str) -> str:
  """The stamp of a model's eval.json ('' when absent)."""
  path = os.path.join(common.model_dir(workdir, label), "eval.json")
  if not os.path.exists(path):
    return ""
  with open(path) as f:
    return str(json.load(f).get("stamp", ""))


def id_embeddings(ctx: Context, label: str, mconfig: ml_collections.ConfigDict
                  ) -> dict[str, np.ndarray]:
  """float32[N, d] item representations of one model per ID table ('rec' / 'search').

  Row i is the mean over item i's ID tokens (one for atomic IDs) of the
  vector that scores the token: the output-head column (`decoder/logits_dense`
  kernel) when the head is untied, else the shared embedding row. (With an
  untied head the input-embedding row of an atomic ID is only fed back to
  predict EOS and barely moves from its initialisation.)
  """
  reg = ctx.registered(mconfig)
  vocab = reg["vocabulary"]
  _, params, _ = trainer.restore_params(mconfig, common.model_dir(ctx.workdir, label),
                                        vocab.vocab_size)
  head = params.get("decoder", {}).get("logits_dense")
  if head is not None:
    table = np.asarray(head["kernel"], np.float32).T          # [vocab, d]
  else:
    table = np.asarray(params["token_embedder"]["embedding"], np.float32)
  out = {}
  for role in ("rec", "search"):
    ids = ctx.ids.rec if role == "rec" else ctx.ids.search
    tokens = ids.codes + np.asarray(vocab.level_offsets(ids), np.int64)[None, :]
    out[role] = table[tokens].mean(axis=1)
  return out
