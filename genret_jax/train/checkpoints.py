"""Orbax checkpoints of the whole TrainState plus the input-pipeline position.

Layout: <workdir>/checkpoints/<step>/{state/, input/} where `state` is the
TrainState (step, params, opt_state, rng; sharded arrays, written by every
process) and `input` a JSON record of where the data stream stands
({"batches_consumed", "batch_size", "input_shards", "seed", "mixture", "pack"}).
Orbax writes each step to a temporary directory and renames it when complete,
so a process killed mid-save leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from genret_jax.errors import ConfigError, GenRetError
from genret_jax.train.state import TrainState


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


class Checkpointer:
  """Saves/restores TrainState + input position; keeps latest N and best M.

  Args:
    directory: the checkpoints folder (created).
    cfg: the `train` config block (keep_checkpoints, keep_best, best_metric,
      best_mode, async_checkpoints).
  """

  def __init__(self, directory: str, cfg: ml_collections.ConfigDict):
    if cfg.keep_checkpoints < 1:
      raise ConfigError("train.keep_checkpoints", f"must be >= 1, got {cfg.keep_checkpoints}")
    if cfg.best_mode not in ("min", "max"):
      raise ConfigError("train.best_mode", f"{cfg.best_mode!r} is not 'min' or 'max'")
    policies = [checkpoint_managers.LatestN(n=int(cfg.keep_checkpoints))]
    if cfg.keep_best:
      metric = cfg.best_metric
      policies.append(checkpoint_managers.BestN(
          get_metric_fn=lambda metrics: metrics[metric], reverse=cfg.best_mode == "min",
          n=int(cfg.keep_best), keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=bool(cfg.async_checkpoints),
        preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
        cleanup_tmp_directories=True, create=True)
    self.directory = directory
    self._manager = ocp.CheckpointManager(directory, options=options,
                                          item_names=("state", "input"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: TrainState, input_position: Mapping[str, Any],
           metrics: Mapping[str, float] | None = None) -> None:
    """Starts saving (asynchronously unless async_checkpoints=False)."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), input=ocp.args.JsonSave(dict(input_position))),
        metrics=dict(metrics) if metrics else None)

  def restore(self, step: int, abstract_state: TrainState) -> tuple[TrainState, dict]:
    """The state at `step`, placed in the shardings of `abstract_state`."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), input=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["input"])

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def check_input_position(saved: Mapping[str, Any], expected: Mapping[str, Any],
                         directory: str) -> None:
  """The data stream of a checkpoint must be the one the config describes.

  Exact resume replays the same stream; a changed batch size, seed, shard count,
  packing or mixture would silently change the data, so it is an error.
  """
  for key, value in expected.items():
    if key == "batches_consumed":
      continue
    if saved.get(key) != value:
      config_key = {"mixture": "tasks.mixture"}.get(key, f"train.{key}")
      raise ConfigError(config_key, f"is {value!r} but the checkpoint in {directory} was "
                        f"written with {saved.get(key)!r}; use a fresh workdir to change it")
  if "batches_consumed" not in saved:
    raise GenRetError(f"checkpoint in {directory} has no input position")
