"""Training length in epochs, validation retrieval, and the full-catalog decoder.

`schedule(ctx, mconfig)` turns the job keys `epochs` and `validation.*` into the
`train` block: num_steps = ceil(epochs * examples / (batch * examples per packed
row)) (at least `train.min_steps`), and with validation a periodic evaluation every
`validation.every_epochs` epochs (at least `validation.min_every_steps` apart) whose
metric (`val_<eval.best_metric>`, the mean over the model's eval tasks) ranks checkpoints: the best is kept and evaluated, and training stops
after `train.patience` evaluations without a better one.

`make_validator` is that evaluation: constrained beam search over the whole
catalog for a seeded subset of each eval task's VALIDATION events, the same
decoder (`eval_arrays` -> `full_trie` -> `evaluation.generative.decode_full`) as the test
evaluation.
"""

from __future__ import annotations

from typing import Any, Callable

import ml_collections
import numpy as np
import seqio

from genret_jax.data import prepared
from genret_jax.decoding import config as decoding_config
from genret_jax.errors import ConfigError
from genret_jax.evaluation import generative as generative_eval
from genret_jax.model import partitioning
from genret_jax.pipeline import common
from genret_jax.train import input_pipeline, trainer


def eval_arrays(task_name: str, config: ml_collections.ConfigDict, split: str
                ) -> dict[str, np.ndarray]:
  """The eval examples of one task as arrays: inputs int32[N, S] (0-padded),
  target_item int32[N], candidates int32[N, 100] (sampled protocol)."""
  length = int(config.tasks.max_input_length)
  ds = seqio.get_mixture_or_task(task_name).get_dataset(
      {"inputs": length, "targets": int(config.tasks.max_target_length)}, split=split,
      shuffle=False, num_epochs=1, use_cached=False)
  inputs, targets, candidates = [], [], []
  for ex in ds.as_numpy_iterator():
    row = np.zeros(length, np.int32)
    row[:len(ex["inputs"])] = ex["inputs"]
    inputs.append(row)
    targets.append(int(ex["target_item"]))
    candidates.append(np.asarray(ex["candidates"], np.int32))
  if not inputs:
    raise ConfigError("data", f"task {task_name} has no {split} examples")
  return {"inputs": np.stack(inputs), "target_item": np.asarray(targets, np.int32),
          "candidates": np.stack(candidates)}


def full_trie(table, vocab, prefix: str, mconfig: ml_collections.ConfigDict, mesh):
  """The full-catalog trie of an ID table (behaviour token `prefix` forced first),
  replicated on the mesh."""
  return generative_eval.catalog_trie(
      table, vocab.level_offsets(table), prefix_tokens=[vocab.token_id(prefix)] if prefix else [],
      dense_max_mb=float(mconfig.decode.dense_max_mb), mesh=mesh)


def decode_kwargs(mconfig: ml_collections.ConfigDict, mesh) -> dict[str, Any]:
  """The keyword arguments of `evaluation.generative.decode_full` / `decode_sampled`
  from a model's config: its `decode` block, `eval.ks`, the mesh and its rules."""
  return dict(decode_config=mconfig.decode, ks=mconfig.eval.ks, mesh=mesh,
              rules=partitioning.logical_axis_rules(mconfig.mesh))


def make_validator(ctx, mconfig: ml_collections.ConfigDict
                   ) -> Callable[[Any], Callable[[Any], dict[str, float]]]:
  """model -> (params -> {'val_<task>_<metric>', 'val_<metric>' (mean over tasks)}) over
  the eval tasks with VALIDATION events (see `validated_tasks`)."""
  reg = ctx.registered(mconfig)
  vocab = reg["vocabulary"]
  mesh = partitioning.make_mesh(mconfig.mesh)
  subset = ml_collections.ConfigDict(mconfig.eval.to_dict())
  subset.max_queries = int(mconfig.validation.max_queries)
  tasks = {}
  for behaviour in validated_tasks(ctx, mconfig):
    arrays = eval_arrays(reg["eval_tasks"][behaviour], mconfig, "validation")
    keep = decoding_config.query_subset(len(arrays["target_item"]), subset)
    table = ctx.ids.search if behaviour == "search" else ctx.ids.rec
    tasks[behaviour] = (arrays["inputs"][keep], arrays["target_item"][keep],
                        full_trie(table, vocab, reg["eval_prefix"][behaviour], mconfig, mesh))
  metric = str(mconfig.eval.best_metric)

  def for_model(model):
    def validate(params) -> dict[str, float]:
      out = {}
      for behaviour, (inputs, targets, trie) in tasks.items():
        m = generative_eval.decode_full(model, params, inputs, targets, trie,
                                        **decode_kwargs(mconfig, mesh)).metrics
        out.update({f"val_{behaviour}_{k}": m[k] for k in ("recall@10", metric) if k in m})
      out["val_" + metric] = float(np.mean([out[f"val_{b}_{metric}"] for b in tasks]))
      return out
    return validate
  return for_model


def validated_tasks(ctx, mconfig: ml_collections.ConfigDict) -> list[str]:
  """The model's eval tasks ('rec' / 'search') that have VALIDATION events."""
  manifest = prepared.read_manifest(f"{ctx.workdir}/prepared")
  per_split = manifest["counts"]["per_split"]["validation"]
  return [b for b in sorted(ctx.registered(mconfig)["eval_tasks"]) if int(per_split[b]) > 0]


def examples_per_row(name: str, mconfig: ml_collections.ConfigDict, rows: int = 512) -> float:
  """Mean number of training examples in a (packed) row of the mixture, from its
  first `rows` rows (1.0 without packing)."""
  if not mconfig.train.pack:
    return 1.0
  ds = input_pipeline.shard_dataset(name, trainer.feature_lengths(mconfig), split="train",
                                    shard=0, shards=1, rows=rows, seed=int(mconfig.train.seed),
                                    pack=True, repeat=True, drop_remainder=True)
  batch = next(ds.as_numpy_iterator())
  return float(np.mean(batch["encoder_segment_ids"].max(axis=1)))


def schedule(ctx, mconfig: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`mconfig` with its training length in steps (see the module docstring).

  An epoch is one pass over the mixture's training examples (a task's rate
  replaces its example count when the rate is >= 0; the per-item cap applies).
  """
  if mconfig.epochs <= 0:
    return mconfig
  reg = ctx.registered(mconfig)
  total = sum(reg["rates"].values())
  per_step = mconfig.train.batch_size * examples_per_row(reg["mixture"], mconfig)
  steps_per_epoch = total / per_step
  out = ml_collections.ConfigDict(mconfig.to_dict())
  out.train.num_steps = max(1, int(mconfig.train.min_steps),
                            int(np.ceil(mconfig.epochs * steps_per_epoch)))
  every = float(mconfig.validation.every_epochs)
  if every > 0 and not validated_tasks(ctx, mconfig):
    common.log(f"{mconfig.name}: no validation events, so no validation: the last checkpoint "
               "is evaluated")
  elif every > 0:
    t = out.train
    t.eval_every = max(1, int(mconfig.validation.min_every_steps),
                       int(np.ceil(every * steps_per_epoch)))
    t.checkpoint_every = t.eval_every
    t.best_metric, t.best_mode = "val_" + str(mconfig.eval.best_metric), "max"
    t.keep_best = max(1, int(t.keep_best))
  out.lock()
  return out
