"""The training loop and evaluation entry points.

  train(config, workdir, mixture_name=..., vocab_size=...)    -> summary dict
  evaluate(config, workdir, task_or_mixture=..., vocab_size=...) -> eval metrics

Workdir layout (docs/training.md):
  <workdir>/checkpoints/<step>/{state,input}   orbax; the latest is resumed
  <workdir>/tensorboard/{train,eval}/          TensorBoard event files

One code path for 1 CPU, a multi-device mesh and many hosts: the mesh comes
from the `mesh` config block, parameters are sharded by the model's logical
axis rules and every host feeds only its own rows of each global batch.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh

from genret_jax.errors import ConfigError, GenRetError
from genret_jax.model import builder, network, partitioning
from genret_jax.train import checkpoints, early_stopping, input_pipeline, metrics_log, optim
from genret_jax.train import state as state_lib
from genret_jax.train import step as step_lib

Hook = Callable[[int], None]
# params -> metrics of one periodic evaluation beyond the loss (e.g. validation
# retrieval through the decoder); called on every process.
ValidateFn = Callable[[Any], Mapping[str, float]]


def validate(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
  """Raises ConfigError naming the key for any inconsistent `train` setting."""
  cfg = config.train
  optim.validate(cfg)
  for key in ("num_steps", "batch_size", "log_every", "grad_accum_steps"):
    if int(cfg[key]) < 1:
      raise ConfigError(f"train.{key}", f"must be >= 1, got {cfg[key]}")
  for key in ("checkpoint_every", "eval_every", "eval_batches", "keep_best", "input_shards",
              "patience", "min_steps"):
    if int(cfg[key]) < 0:
      raise ConfigError(f"train.{key}", f"must be >= 0, got {cfg[key]}")
  if cfg.batch_size % cfg.grad_accum_steps:
    raise ConfigError("train.grad_accum_steps", f"{cfg.grad_accum_steps} does not divide "
                      f"train.batch_size={cfg.batch_size}")
  data = mesh.shape["data"]
  if (cfg.batch_size // cfg.grad_accum_steps) % data:
    raise ConfigError("train.batch_size", f"{cfg.batch_size} rows in "
                      f"{cfg.grad_accum_steps} micro-batch(es) cannot be split evenly over the "
                      f"{data} devices of the mesh's 'data' axis")
  if cfg.keep_best and not cfg.eval_every:
    raise ConfigError("train.keep_best", "needs train.eval_every > 0 (the metric comes from "
                      "periodic evaluation)")
  if not cfg.min_delta >= 0:
    raise ConfigError("train.min_delta", f"must be >= 0, got {cfg.min_delta}")
  if cfg.z_loss < 0 or not 0 <= cfg.label_smoothing < 1:
    raise ConfigError("train.z_loss" if cfg.z_loss < 0 else "train.label_smoothing",
                      "out of range")


def feature_lengths(config: ml_collections.ConfigDict) -> dict[str, int]:
  """seqio task feature lengths from the `tasks` block."""
  return {"inputs": int(config.tasks.max_input_length),
          "targets": int(config.tasks.max_target_length)}


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> nn.Module:
  """The T5 of `config.model` for a vocabulary of `vocab_size` tokens."""
  return network.Transformer(builder.t5_config_from_block(config.model, vocab_size))


def _mesh_and_rules(config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None
                    ) -> tuple[Mesh, Any]:
  """The `mesh` block's mesh (over `devices`, default all) and its logical axis rules."""
  return (partitioning.make_mesh(config.mesh, devices),
          partitioning.logical_axis_rules(config.mesh))


class _Evaluator:
  """Eval loss / token and sequence accuracy of params over one split."""

  def __init__(self, model, mesh, rules, param_shardings, name, lengths, split, batch_size,
               shards, max_batches):
    self._sharding = step_lib.batch_sharding(mesh)
    self._batch_size = batch_size
    self._batches = input_pipeline.eval_batches(
        name, lengths, split=split, batch_size=batch_size, shards=shards,
        sharding=self._sharding, max_batches=max_batches)
    self._step = step_lib.jit_eval_step(step_lib.make_eval_step(model), mesh, rules,
                                        param_shardings)

  def __call__(self, params) -> dict[str, float]:
    totals = None
    for batch in self._batches:
      sums = self._step(params, input_pipeline.to_global(batch, self._sharding,
                                                         self._batch_size))
      totals = sums if totals is None else jax.tree_util.tree_map(jnp.add, totals, sums)
    t = {k: float(v) for k, v in jax.device_get(totals).items()}
    return {"eval_loss": t["cross_entropy"] / max(t["weight"], 1.0),
            "token_accuracy": t["correct"] / max(t["weight"], 1.0),
            "sequence_accuracy": t["sequences_correct"] / max(t["sequences"], 1.0),
            "eval_tokens": t["weight"], "eval_examples": t["sequences"]}


def model_and_init(config: ml_collections.ConfigDict, vocab_size: int
                   ) -> tuple[nn.Module, Any]:
  """(model, initial params or None for a random init).

  With `config.model.hf_checkpoint` set, the network's dimensions and initial
  parameters come from that Hugging Face T5 directory, its vocabulary resized
  to `vocab_size` (see `genret_jax.model.builder.load_pretrained`).
  """
  if config.model.hf_checkpoint:
    cfg, params, _ = builder.load_pretrained(config.model, vocab_size, int(config.train.seed))
    return network.Transformer(cfg), params
  return build_model(config, vocab_size), None


def _resumed_input_shards(cfg: ml_collections.ConfigDict, saved: Mapping[str, Any],
                          shards: int, sharding: Any, directory: str) -> int:
  """The input shard count a resumed run reads with.

  With train.input_shards = 0 a run keeps the count its checkpoint recorded
  (the default may differ: another device count, or a checkpoint from before
  the default was gcd(batch_size, device count)), so it continues the same
  data stream. An explicit value must match it (check_input_position). Raises
  ConfigError naming train.input_shards when the recorded count cannot be
  divided among this run's processes.
  """
  recorded = saved.get("input_shards")
  if (int(cfg.input_shards) or recorded in (None, shards)
      or saved.get("batch_size") != int(cfg.batch_size)):
    return shards  # nothing to adopt, or check_input_position reports the mismatch
  try:
    return input_pipeline.num_input_shards(int(recorded), int(cfg.batch_size), sharding)
  except ConfigError as e:
    reason = str(e).split(": ", 1)[-1]
    raise ConfigError("train.input_shards", f"the checkpoint in {directory} reads "
                      f"{recorded} input shards, which this run cannot: {reason}; use a fresh "
                      "workdir or the process and device layout it was written with") from e


def train(config: ml_collections.ConfigDict, workdir: str, *, mixture_name: str,
          vocab_size: int, hooks: Sequence[Hook] = (),
          validate_fn: Callable[[nn.Module], ValidateFn] | None = None) -> dict[str, Any]:
  """Trains `config.model` on the seqio mixture; resumes from the latest checkpoint.

  With `config.model.hf_checkpoint` set, the network's dimensions and initial
  parameters come from that Hugging Face T5 directory, its vocabulary grown to
  `vocab_size` (see `model_and_init`). `validate_fn(model)` makes the extra
  periodic evaluation (see `train_model`). See `train_model` for the returned summary.
  """
  model, init_params = model_and_init(config, vocab_size)
  return train_model(config, workdir, model, mixture_name=mixture_name, init_params=init_params,
                     hooks=hooks, validate_params=validate_fn(model) if validate_fn else None)


def train_model(config: ml_collections.ConfigDict, workdir: str, model: nn.Module, *,
                mixture_name: str, init_params: Any = None, hooks: Sequence[Hook] = (),
                devices: Sequence[jax.Device] | None = None,
                validate_params: ValidateFn | None = None) -> dict[str, Any]:
  """The training loop for any flax module with the T5 `__call__` signature.

  Args:
    init_params: parameters to start from instead of a random init.
    devices: the devices of the mesh (default: all); e.g. one device.
    hooks: called on the host after each step is dispatched with the 1-based
      step number (no device sync); e.g. profiling or a test's kill point.
    validate_params: params -> more metrics for each periodic evaluation (every
      `train.eval_every` steps), e.g. validation retrieval. The evaluations go
      to TensorBoard, the log and <workdir>/validation.json; `train.best_metric`
      ranks them (`train.keep_best` keeps the best checkpoints) and with
      `train.patience` > 0 training stops after that many evaluations without a
      better one, at `train.min_steps` at the earliest (early stopping; a rerun of
      a stopped run trains no further).
  Returns:
    {"first_step", "last_step", "first_loss", "last_loss", "resumed_from",
     "history": {metric: float32[steps run]} for steps first..last,
     "eval": last eval metrics or None, "best": the best evaluation or None,
     "stopped_early": bool, "checkpoint_dir", "tensorboard_dir"}.
  Raises:
    ConfigError for bad settings; NonFiniteLossError (a GenRetError) when a
    loss or gradient norm is NaN/Inf, after the last good checkpoint is safe.
  """
  cfg = config.train
  mesh, rules = _mesh_and_rules(config, devices)
  validate(config, mesh)
  lengths = feature_lengths(config)
  sharding = step_lib.batch_sharding(mesh)
  shards = input_pipeline.num_input_shards(cfg.input_shards, int(cfg.batch_size), sharding)
  tx = optim.make_optimizer(cfg)
  abstract, shardings = state_lib.state_shardings(model, tx, mesh, rules, lengths["inputs"],
                                                  lengths["targets"])
  ckpt = checkpoints.Checkpointer(checkpoints.checkpoint_dir(workdir), cfg)
  begin = _initial_state(cfg, ckpt, model, tx, abstract, shardings, lengths, mixture_name,
                         sharding, shards, init_params)
  start = begin.resumed_from or 0
  tracker = early_stopping.ValidationHistory(workdir, cfg.best_metric, cfg.best_mode,
                                             int(cfg.patience), start, int(cfg.min_steps),
                                             float(cfg.min_delta))
  num_steps = int(cfg.num_steps)
  if tracker.stopped_at is not None and tracker.stopped_at == start:
    num_steps = start          # stopped early before: nothing left to run
  shards = begin.position["input_shards"]
  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(model, tx, optim.learning_rate_schedule(cfg), cfg), mesh, rules,
      shardings)
  evaluate = _evaluate_fn(cfg, validate_params, lambda: _Evaluator(
      model, mesh, rules, shardings.params, mixture_name, lengths, cfg.eval_split,
      int(cfg.batch_size), shards, int(cfg.eval_batches)))
  loop = _Loop(cfg, ckpt, metrics_log.MetricsLogger(workdir, num_steps, start), tracker,
               evaluate, begin.position, begin.resumed_from)
  batches = input_pipeline.train_batches(
      mixture_name, lengths, split=cfg.train_split, seed=int(cfg.seed),
      batch_size=int(cfg.batch_size), shards=shards, sharding=sharding, pack=bool(cfg.pack),
      start_step=start)
  try:
    state, num_steps = loop.run(begin.state, train_step, batches, sharding, start, num_steps,
                                hooks)
  finally:
    ckpt.wait()  # the last good checkpoint is complete on disk, even on an error
    ckpt.close()
    loop.logger.close()
  return loop.summary(state, start, num_steps, begin.resumed_from)


class _Begin(NamedTuple):
  """Where a run starts: its state, input position and the checkpoint step resumed
  from (None for a fresh start)."""
  state: state_lib.TrainState
  position: dict[str, Any]
  resumed_from: int | None


def _initial_state(cfg: ml_collections.ConfigDict, ckpt: checkpoints.Checkpointer,
                   model: nn.Module, tx: Any, abstract: state_lib.TrainState,
                   shardings: state_lib.TrainState, lengths: dict[str, int],
                   mixture_name: str, sharding: Any, shards: int, init_params: Any) -> _Begin:
  """A fresh state, or the latest checkpoint's after checking that it continues
  the same data stream (GenRetError / ConfigError when it cannot)."""
  position = {"batches_consumed": 0, "batch_size": int(cfg.batch_size), "input_shards": shards,
              "seed": int(cfg.seed), "mixture": mixture_name, "pack": bool(cfg.pack)}
  resumed_from = ckpt.latest_step()
  if resumed_from is None:
    state = state_lib.init_train_state(model, tx, int(cfg.seed), shardings, lengths["inputs"],
                                       lengths["targets"], init_params)
    return _Begin(state, position, None)
  state, saved = ckpt.restore(resumed_from, abstract)
  position["input_shards"] = _resumed_input_shards(cfg, saved, shards, sharding, ckpt.directory)
  checkpoints.check_input_position(saved, position, ckpt.directory)
  if int(state.step) != resumed_from or saved["batches_consumed"] != resumed_from:
    raise GenRetError(f"checkpoint {ckpt.directory}/{resumed_from} is inconsistent: state "
                      f"step {int(state.step)}, input position {saved['batches_consumed']}")
  return _Begin(state, position, resumed_from)


def _evaluate_fn(cfg: ml_collections.ConfigDict, validate_params: ValidateFn | None,
                 make_evaluator: Callable[[], _Evaluator]) -> ValidateFn | None:
  """params -> the periodic evaluation's metrics: validation retrieval when given,
  else the eval loss of `train.eval_split` (with train.eval_every > 0); None for
  no periodic evaluation."""
  if validate_params is not None:
    return lambda params: dict(validate_params(params))
  if cfg.eval_every:
    return make_evaluator()
  return None


class _Loop:
  """The step loop: metrics fetched lazily, logging, periodic evaluation with
  early stopping, checkpoints."""

  def __init__(self, cfg: ml_collections.ConfigDict, ckpt: checkpoints.Checkpointer,
               logger: metrics_log.MetricsLogger, tracker: early_stopping.ValidationHistory,
               evaluate: ValidateFn | None, position: dict[str, Any], last_saved: int | None):
    self.cfg, self.ckpt, self.logger, self.tracker = cfg, ckpt, logger, tracker
    self.evaluate, self.position, self.last_saved = evaluate, position, last_saved
    self.eval_every = int(cfg.eval_every) if evaluate else 0
    self.history: list[dict[str, np.ndarray]] = []
    self.window: list[dict[str, np.ndarray]] = []
    self.pending: list[dict[str, jax.Array]] = []
    self.eval_metrics: dict[str, float] | None = None

  def run(self, state: state_lib.TrainState, train_step: Any, batches: Any, sharding: Any,
          start: int, num_steps: int, hooks: Sequence[Hook]) -> tuple[Any, int]:
    """Steps start+1..num_steps; returns (state, last step run)."""
    for step in range(start + 1, num_steps + 1):
      batch = input_pipeline.to_global(next(batches), sharding, int(self.cfg.batch_size))
      state, metrics = train_step(state, batch)
      self.pending.append(metrics)
      for hook in hooks:
        hook(step)
      if self.after_step(step, state, is_last=step == num_steps):
        return state, step
    return state, num_steps

  def after_step(self, step: int, state: state_lib.TrainState, is_last: bool) -> bool:
    """Logs, evaluates and saves as due at `step`; True when training stops early."""
    cfg = self.cfg
    do_log = step % int(cfg.log_every) == 0 or is_last
    do_eval = bool(self.eval_every) and (step % self.eval_every == 0 or is_last)
    every = int(cfg.checkpoint_every)
    do_save = is_last or bool(every and step % every == 0)
    if do_log or do_eval or do_save:
      self.flush(step)
    if do_log:
      self.logger.train(step, {k: np.concatenate([w[k] for w in self.window])
                               for k in self.window[0]})
      self.window.clear()
    stop = self.run_evaluation(step, state.params) if do_eval else False
    if do_save or stop:
      self.position["batches_consumed"] = step
      self.ckpt.save(step, state, self.position,
                     metrics=self.eval_metrics if do_eval else None)
      self.last_saved = step
    if do_eval:
      if stop:
        self.stopped_early(step)
      self.tracker.save()
    return stop

  def flush(self, step: int) -> None:
    """Fetches pending metrics; raises before anything after a NaN is saved."""
    if not self.pending:
      return
    fetched = metrics_log.fetch(self.pending)
    first = step - len(self.pending) + 1
    self.pending.clear()
    bad = metrics_log.first_non_finite(fetched, first)
    if bad is not None:
      raise metrics_log.NonFiniteLossError(*bad, last_checkpoint=self.last_saved,
                                           checkpoint_dir=self.ckpt.directory)
    self.history.append(fetched)
    self.window.append(fetched)

  def run_evaluation(self, step: int, params: Any) -> bool:
    """The periodic evaluation at `step`; True when early stopping says stop."""
    self.eval_metrics = dict(self.evaluate(params))
    self.logger.eval(step, self.eval_metrics)
    self.tracker.add(step, self.eval_metrics)
    return self.tracker.should_stop()

  def stopped_early(self, step: int) -> None:
    cfg = self.cfg
    self.tracker.stopped_at = step
    best = self.tracker.best()
    self.logger.message(f"early stopping at step {step}: {cfg.best_metric} gained at most "
                        f"{cfg.min_delta} in the last {cfg.patience} evaluations; best "
                        f"{best[cfg.best_metric]:.4f} at step {best['step']}")

  def summary(self, state: state_lib.TrainState, start: int, last_step: int,
              resumed_from: int | None) -> dict[str, Any]:
    """train_model's result (see its docstring)."""
    hist = ({k: np.concatenate([h[k] for h in self.history]) for k in self.history[0]}
            if self.history else {})
    return {
        "first_step": start + 1, "last_step": last_step, "resumed_from": resumed_from,
        "first_loss": float(hist["loss"][0]) if hist else None,
        "last_loss": float(hist["loss"][-1]) if hist else None,
        "history": hist, "eval": self.eval_metrics, "state": state,
        "best": self.tracker.best(), "best_metric": self.cfg.best_metric,
        "stopped_early": self.tracker.stopped_at is not None,
        "checkpoint_dir": self.ckpt.directory, "tensorboard_dir": self.logger.tensorboard_dir,
    }


def selected_step(config: ml_collections.ConfigDict, workdir: str) -> int | None:
  """The checkpoint a trained model is used at: the best periodic evaluation by
  `train.best_metric` among the kept checkpoints (validation.json), else the latest."""
  ckpt = checkpoints.Checkpointer(checkpoints.checkpoint_dir(workdir), config.train)
  try:
    steps = ckpt.all_steps()
  finally:
    ckpt.close()
  if not steps:
    return None
  best = early_stopping.best_step(workdir, steps)
  return steps[-1] if best is None else best


def restore_params(config: ml_collections.ConfigDict, workdir: str, vocab_size: int,
                   devices: Sequence[jax.Device] | None = None) -> tuple[nn.Module, Any, int]:
  """(model, params, step) of the `selected_step` checkpoint in `workdir` (the best
  validated one, else the latest).

  Params are sharded on the `config.mesh` mesh (over `devices`, default all)
  by the model's logical axis rules; the model is the one `train` built (from
  `model.hf_checkpoint` when set). Raises GenRetError when there is none.
  """
  model, _ = model_and_init(config, vocab_size)
  mesh, rules = _mesh_and_rules(config, devices)
  lengths = feature_lengths(config)
  abstract, _ = state_lib.state_shardings(model, optim.make_optimizer(config.train), mesh,
                                          rules, lengths["inputs"], lengths["targets"])
  step = selected_step(config, workdir)
  ckpt = checkpoints.Checkpointer(checkpoints.checkpoint_dir(workdir), config.train)
  try:
    if step is None:
      raise GenRetError(f"no checkpoint in {ckpt.directory}: train first (--mode=train)")
    state, _ = ckpt.restore(step, abstract)
  finally:
    ckpt.close()
  return model, state.params, step


def evaluate(config: ml_collections.ConfigDict, workdir: str, *, task_or_mixture: str,
             vocab_size: int) -> dict[str, float]:
  """Eval loss, token accuracy and sequence accuracy of the latest checkpoint.

  Reads split `config.train.eval_split` of `task_or_mixture` (unpacked, one
  epoch, `train.eval_batches` batches at most) and logs to
  <workdir>/tensorboard/eval. Returns {"eval_loss", "token_accuracy",
  "sequence_accuracy", "eval_tokens", "eval_examples", "eval_seconds", "step"}.
  """
  cfg = config.train
  mesh, rules = _mesh_and_rules(config)
  validate(config, mesh)
  model, params, step = restore_params(config, workdir, vocab_size)
  param_shardings = jax.tree_util.tree_map(lambda x: x.sharding, params)
  shards = input_pipeline.num_input_shards(cfg.input_shards, int(cfg.batch_size),
                                           step_lib.batch_sharding(mesh))
  evaluator = _Evaluator(model, mesh, rules, param_shardings, task_or_mixture,
                         feature_lengths(config), cfg.eval_split, int(cfg.batch_size), shards,
                         int(cfg.eval_batches))
  started = time.perf_counter()
  metrics = evaluator(params)
  metrics["eval_seconds"] = time.perf_counter() - started
  logger = metrics_log.MetricsLogger(workdir, step, step)
  logger.eval(step, metrics)
  logger.close()
  return {**metrics, "step": step}


def summarize(result: Mapping[str, Any]) -> str:
  """One line for the pipeline: first and last loss of a `train` result."""
  best, metric = result.get("best"), result.get("best_metric")
  tail = f"; best {metric} {best[metric]:.4f} at step {best['step']}" if best else ""
  tail += " (stopped early)" if result.get("stopped_early") else ""
  if result["first_loss"] is None:
    return f"training already complete at step {result['last_step']}{tail}"
  return (f"trained steps {result['first_step']}..{result['last_step']}: "
          f"loss {result['first_loss']:.4f} -> {result['last_loss']:.4f}{tail}")
