"""Orbax checkpoints of the whole TrainState plus the input-pipeline position.

Layout: <workdir>/checkpoints/<step>/{state/, input/} where `state` is the
TrainState (step, params, opt_state, rng; sharded arrays, written by every
process) and `input` a JSON record of where the data stream stands
({"batches_consumed", "batch_size", "input_shards", "seed", "mixture", "pack"}).
Orbax writes each step to a temporary directory and renames it when complete,
so a process killed mid-save leaves the previous checkpoint as the latest.

Each finished step's files are recorded (size + sha256) in
`<workdir>/checkpoints.files.json`. Opening the folder checks every step against
its record (a step without one, written before records existed or by a
process killed right after the save, must at least hold both items): a
damaged step (a truncated or changed file, a missing item) is moved to
`<workdir>/checkpoints.damaged/` with a warning, so resuming and evaluation
fall back to the previous good checkpoint (with several processes the run
stops instead, naming the step). A step that still fails to restore stops the
run with one line naming it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping

import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from genret_jax import cache
from genret_jax.errors import ConfigError, GenRetError, brief
from genret_jax.train.state import TrainState

ITEMS = ("state", "input")
RECORD_SUFFIX = ".files.json"       # <checkpoints>.files.json: {step: {file: [size, sha256]}}
DAMAGED_SUFFIX = ".damaged"         # <checkpoints>.damaged/<step>-<time>: damaged steps


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
    self._record_path = directory.rstrip(os.sep) + RECORD_SUFFIX
    self._record = _read_record(self._record_path)
    self._set_aside_damaged()
    self._manager = ocp.CheckpointManager(directory, options=options, item_names=ITEMS)

  def _step_dirs(self) -> list[int]:
    """Steps with a finished folder on disk (orbax's temporary folders excluded)."""
    if not os.path.isdir(self.directory):
      return []
    return sorted(int(n) for n in os.listdir(self.directory)
                  if n.isdigit() and os.path.isdir(os.path.join(self.directory, n)))

  def problem(self, step: int) -> tuple[str, str] | None:
    """(file or item, reason) of the first damage in a step's folder, or None."""
    folder = os.path.join(self.directory, str(step))
    record = self._record.get(str(step))
    if record:
      return cache.check_files(folder, record, os.path.basename(self._record_path))
    for item in ITEMS:
      if not os.path.isdir(os.path.join(folder, item)) or not os.listdir(
          os.path.join(folder, item)):
        return item, "missing or empty item (an incomplete checkpoint)"
    return None

  def _set_aside_damaged(self) -> None:
    """Moves damaged steps out of the way (one process) or stops (several), before
    orbax lists the steps."""
    damaged = [(s, p) for s in self._step_dirs() if (p := self.problem(s)) is not None]
    if not damaged:
      return
    if jax.process_count() > 1:
      step, (name, reason) = damaged[-1]
      raise GenRetError(f"{os.path.join(self.directory, str(step), name)}: {reason}: checkpoint "
                        f"step {step} is damaged; delete {os.path.join(self.directory, str(step))}"
                        " to resume from the previous checkpoint")
    for step, (name, reason) in damaged:
      dest = os.path.join(self.directory.rstrip(os.sep) + DAMAGED_SUFFIX,
                          f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
      os.makedirs(os.path.dirname(dest), exist_ok=True)
      os.rename(os.path.join(self.directory, str(step)), dest)
      self._record.pop(str(step), None)
      good = self._step_dirs()
      cache.warn(f"{os.path.join(self.directory, str(step), name)}: {reason}: checkpoint step "
                 f"{step} is damaged, moved to {dest}; "
                 + (f"using the previous good checkpoint (step {good[-1]})" if good
                    else "no good checkpoint is left (training starts over)"))
    self._write_record()

  def _write_record(self) -> None:
    if jax.process_index() != 0:
      return
    tmp = f"{self._record_path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
      json.dump(self._record, f, indent=1, sort_keys=True)
    os.replace(tmp, self._record_path)

  def _record_finished(self) -> None:
    """Records size + sha256 of every finished step not recorded yet; forgets the
    steps orbax deleted. Call when no save is in flight."""
    if jax.process_index() != 0:
      return
    steps = {str(s) for s in self._step_dirs()}
    new = {s: cache.record_files(os.path.join(self.directory, s)) for s in steps
           if s not in self._record}
    gone = [s for s in self._record if s not in steps]
    if new or gone:
      for s in gone:
        del self._record[s]
      self._record.update(new)
      self._write_record()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: TrainState, input_position: Mapping[str, Any],
           metrics: Mapping[str, float] | None = None) -> None:
    """Starts saving (asynchronously unless async_checkpoints=False)."""
    self.wait()   # orbax waits for the previous save here anyway; then it is recorded
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), input=ocp.args.JsonSave(dict(input_position))),
        metrics=dict(metrics) if metrics else None)

  def restore(self, step: int, abstract_state: TrainState) -> tuple[TrainState, dict]:
    """The state at `step`, placed in the shardings of `abstract_state`.

    Raises:
      GenRetError: the step cannot be read (one line naming it).
    """
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), input=ocp.args.JsonRestore()))
    except GenRetError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # tensorstore/orbax raise many types
      raise GenRetError(f"{os.path.join(self.directory, str(step))}: cannot restore the "
                        f"checkpoint ({type(e).__name__}: {brief(e)}); delete that folder to "
                        "use the previous checkpoint") from None
    return restored["state"], dict(restored["input"])

  def wait(self) -> None:
    """Waits for the save in flight, then records the finished steps."""
    self._manager.wait_until_finished()
    self._record_finished()

  def close(self) -> None:
    self.wait()
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


def _read_record(path: str) -> dict[str, dict]:
  """The steps' file records; {} when absent or unreadable (steps then get the
  structural check only)."""
  try:
    with open(path) as f:
      record = json.load(f)
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as e:
    cache.warn(f"{path}: unreadable ({brief(e)}); checking the checkpoints' items only")
    return {}
  return record if isinstance(record, dict) else {}
