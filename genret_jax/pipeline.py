"""The main job: prepare -> ids -> train -> eval, each a function of (config, workdir).

Every step writes under `workdir` and is skipped when its output already exists
for the same settings: `prepare` compares the data config hash in the prepared
manifest, `ids` a stamp of the ids config + prepared content hash, `train`
resumes from (or stops at) the latest checkpoint. So an interrupted run
continues where it stopped and a rerun is cheap.
"""

from __future__ import annotations

import hashlib
import json
import os

import jax
import ml_collections
import numpy as np

from genret_jax.errors import ConfigError

STEPS = ("prepare", "ids", "train", "eval")
MODEL_NAMES = {"rec_only": "Gen_R", "search_only": "Gen_S", "joint": "Gen_R+S",
               "gensar": "GenSAR"}


def _log(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


def prepared_path(workdir: str) -> str:
  return os.path.join(workdir, "prepared")


def run_prepare(config: ml_collections.ConfigDict, workdir: str) -> str:
  from genret_jax.data import prepare  # pylint: disable=g-import-not-at-top
  return prepare.prepare(config, workdir)


def _ids_stamp(config: ml_collections.ConfigDict, manifest: dict) -> str:
  text = json.dumps({"ids": config.ids.to_dict(), "data": manifest.get("content_hash")},
                    sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()


def run_ids(config: ml_collections.ConfigDict, workdir: str):
  """Builds (or reuses) the identifiers of config.ids.scheme from the prepared data."""
  from genret_jax.data import prepared  # pylint: disable=g-import-not-at-top
  from genret_jax.ids import build  # pylint: disable=g-import-not-at-top
  path = prepared_path(workdir)
  manifest = prepared.read_manifest(path)
  if manifest is None:
    raise ConfigError("workdir", f"{path} holds no prepared dataset; run --mode=prepare")
  stamp_path = os.path.join(workdir, "ids", config.ids.scheme, "stamp")
  stamp = _ids_stamp(config, manifest)
  if os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
    _log(f"ids: reusing {os.path.dirname(stamp_path)} (same ids config and data)")
    return build.load_identifiers(workdir, config.ids.scheme)
  ds = prepared.load(path)
  ids, _ = build.build_identifiers(config, ds.catalog, ds.events, ds.split, workdir)
  with open(stamp_path, "w") as f:
    f.write(stamp)
  return ids


def _identifiers(config: ml_collections.ConfigDict, workdir: str, ctx: dict):
  if "ids" not in ctx:
    from genret_jax.ids import build  # pylint: disable=g-import-not-at-top
    ctx["ids"] = build.load_identifiers(workdir, config.ids.scheme)
  return ctx["ids"]


def _registered(config: ml_collections.ConfigDict, workdir: str, ctx: dict) -> dict:
  if "tasks" not in ctx:
    from genret_jax import tasks  # pylint: disable=g-import-not-at-top
    ctx["tasks"] = tasks.register(config, workdir, _identifiers(config, workdir, ctx))
  return ctx["tasks"]


def run_train(config: ml_collections.ConfigDict, workdir: str, ctx: dict) -> dict:
  from genret_jax.train import trainer  # pylint: disable=g-import-not-at-top
  reg = _registered(config, workdir, ctx)
  result = trainer.train(config, workdir, mixture_name=reg["mixture"],
                         vocab_size=reg["vocabulary"].vocab_size)
  _log(trainer.summarize(result))
  return result


def eval_arrays(task_name: str, config: ml_collections.ConfigDict, split: str
                ) -> dict[str, np.ndarray]:
  """The eval examples of one task as arrays: inputs int32[N, S] (0-padded),
  target_item int32[N], candidates int32[N, 100] (sampled protocol)."""
  import seqio  # pylint: disable=g-import-not-at-top
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


def restore_params(config: ml_collections.ConfigDict, workdir: str, vocab_size: int):
  """(model, params, step) of the latest checkpoint, params sharded on config.mesh."""
  from genret_jax.errors import GenRetError  # pylint: disable=g-import-not-at-top
  from genret_jax.model import partitioning  # pylint: disable=g-import-not-at-top
  from genret_jax.train import checkpoints, optim, state as state_lib, trainer  # pylint: disable=g-import-not-at-top
  model = trainer.build_model(config, vocab_size)
  mesh = partitioning.make_mesh(config.mesh)
  lengths = trainer.feature_lengths(config)
  abstract, _ = state_lib.state_shardings(model, optim.make_optimizer(config.train), mesh,
                                          partitioning.LOGICAL_AXIS_RULES, lengths["inputs"],
                                          lengths["targets"])
  ckpt = checkpoints.Checkpointer(checkpoints.checkpoint_dir(workdir), config.train)
  try:
    step = ckpt.latest_step()
    if step is None:
      raise GenRetError(f"no checkpoint in {ckpt.directory}: train first (--mode=train)")
    state, _ = ckpt.restore(step, abstract)
  finally:
    ckpt.close()
  return model, state.params, step


def run_eval(config: ml_collections.ConfigDict, workdir: str, ctx: dict) -> dict:
  """Decodes every eval task's test queries and writes results.json / results.md."""
  from genret_jax.evaluation import generative, results  # pylint: disable=g-import-not-at-top
  from genret_jax.model import partitioning  # pylint: disable=g-import-not-at-top
  from genret_jax.train import trainer  # pylint: disable=g-import-not-at-top
  reg = _registered(config, workdir, ctx)
  ids = _identifiers(config, workdir, ctx)
  vocab = reg["vocabulary"]
  model, params, step = restore_params(config, workdir, vocab.vocab_size)
  mesh = partitioning.make_mesh(config.mesh)
  model_name = MODEL_NAMES.get(config.tasks.mixture, config.name)
  out = {}
  for behaviour, task_name in sorted(reg["eval_tasks"].items()):
    table = ids.search if behaviour == "search" else ids.rec
    prefix = reg["eval_prefix"][behaviour]
    arrays = eval_arrays(task_name, config, "test")
    metrics = generative.evaluate_generative(
        model, params, arrays["inputs"], arrays["target_item"], table,
        vocab.level_offsets(table), prefix_tokens=[vocab.token_id(prefix)] if prefix else [],
        decode_config=config.decode, eval_config=config.eval,
        candidates=arrays["candidates"], mesh=mesh)
    out[behaviour] = metrics
    _log(f"eval {model_name} {behaviour} (step {step}, {len(arrays['target_item'])} queries): "
         + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "@" in k or k == "mrr"))
  if jax.process_index() == 0:
    results.write_results({model_name: out}, workdir)
  return out


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> None:
  steps = STEPS if mode == "all" else (mode,)
  ctx: dict = {}
  for step in steps:
    if step == "prepare":
      run_prepare(config, workdir)
    elif step == "ids":
      ctx["ids"] = run_ids(config, workdir)
    elif step == "train":
      run_train(config, workdir, ctx)
    elif step == "eval":
      run_eval(config, workdir, ctx)
