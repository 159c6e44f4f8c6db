"""Validation history of one training run: the best step and early stopping.

`<workdir>/validation.json` holds {"metric", "mode", "evals": [{"step", metric: value,
...}], "stopped_at": step or null}. Process 0 rewrites it atomically after every
periodic evaluation, so a resumed run keeps counting its patience from the
checkpoint it restarts at (evaluations after that step are dropped: they belong
to steps the run will redo), and a run that stopped early stays stopped.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Mapping

import jax

from genret_jax.errors import ConfigError

FILENAME = "validation.json"


class ValidationHistory:
  """The periodic evaluations of a run, ranked by `metric` (`mode` 'max' or 'min').

  Args:
    workdir: the run's workdir (the file lives there).
    metric: the metric that ranks evaluations (train.best_metric).
    mode: 'max' or 'min' (train.best_mode).
    patience: stop after this many evaluations in a row without a better
      metric (train.patience); 0 = never.
    resumed_from: the step the run restarts at (0 for a fresh run).
    min_steps: never stop before this step (train.min_steps).
    min_delta: an evaluation restarts the patience count only when it beats the
      last one that did by more than this (train.min_delta), as Keras'
      EarlyStopping; the best checkpoint is still the best value.
  """

  def __init__(self, workdir: str, metric: str, mode: str, patience: int, resumed_from: int,
               min_steps: int = 0, min_delta: float = 0.0):
    self.path = os.path.join(workdir, FILENAME)
    self.metric, self.mode, self.patience = metric, mode, int(patience)
    self.min_steps, self.min_delta = int(min_steps), float(min_delta)
    self.evals: list[dict[str, float]] = []
    self.stopped_at: int | None = None
    saved = read(workdir)
    if saved is not None and saved.get("metric") == metric and saved.get("mode") == mode:
      self.evals = [e for e in saved["evals"] if e["step"] <= resumed_from]
      stopped = saved.get("stopped_at")
      self.stopped_at = stopped if stopped is not None and stopped <= resumed_from else None

  def add(self, step: int, metrics: Mapping[str, float]) -> None:
    if self.metric not in metrics:
      raise ConfigError("train.best_metric", f"{self.metric!r} is not one of the evaluation's "
                        f"metrics {sorted(metrics)}")
    self.evals.append({"step": int(step), **{k: float(v) for k, v in metrics.items()}})

  def best(self, steps: Iterable[int] | None = None) -> dict[str, float] | None:
    """The best evaluation (the earliest on ties), among `steps` when given."""
    return _best(self.evals, self.metric, self.mode, steps)

  def should_stop(self) -> bool:
    """True when the last `patience` evaluations all came after the last one that
    improved by more than `min_delta` (and the last is at `min_steps` or later)."""
    if not self.patience or not self.evals or self.evals[-1]["step"] < self.min_steps:
      return False
    sign = 1.0 if self.mode == "max" else -1.0
    reference, since = None, 0
    for e in self.evals:
      if reference is None or sign * (e[self.metric] - reference) > self.min_delta:
        reference, since = e[self.metric], 0
      else:
        since += 1
    return since >= self.patience

  def save(self) -> None:
    if jax.process_index() != 0:
      return
    blob = {"metric": self.metric, "mode": self.mode, "evals": self.evals,
            "stopped_at": self.stopped_at}
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(blob, f, indent=1)
    os.replace(tmp, self.path)


def read(workdir: str) -> dict | None:
  """The validation.json of a run, or None."""
  path = os.path.join(workdir, FILENAME)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def best_step(workdir: str, steps: Iterable[int]) -> int | None:
  """The best evaluated step among the checkpoint `steps` (None without a history)."""
  saved = read(workdir)
  if not saved or not saved["evals"]:
    return None
  best = _best(saved["evals"], saved["metric"], saved["mode"], steps)
  return None if best is None else int(best["step"])


def _best(evals: list[dict[str, float]], metric: str, mode: str,
          steps: Iterable[int] | None) -> dict[str, float] | None:
  """The best of `evals` by `metric` (the earliest on ties), among `steps` when given."""
  allowed = None if steps is None else set(steps)
  sign = 1.0 if mode == "max" else -1.0
  out = None
  for e in evals:
    if allowed is not None and e["step"] not in allowed:
      continue
    if out is None or sign * (e[metric] - out[metric]) > 0:
      out = e
  return out
