"""Host-side metrics: the NaN/Inf guard, stdout progress lines, TensorBoard.

The train loop keeps each step's metrics on device and calls `fetch` every
`log_every` steps (and before checkpoints), so the hot loop never waits on the
host. TensorBoard event files go to <workdir>/tensorboard/{train,eval}
(process 0 only).
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from typing import Mapping, Sequence

import jax
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from genret_jax.errors import GenRetError


class NonFiniteLossError(GenRetError):
  """A NaN/Inf loss or gradient norm stopped training.

  Attributes:
    step: the 1-based training step whose loss was not finite.
    last_checkpoint: the step of the last good checkpoint kept, or None.
  """

  def __init__(self, step: int, metric: str, value: float, last_checkpoint: int | None,
               checkpoint_dir: str):
    self.step = step
    self.last_checkpoint = last_checkpoint
    kept = (f"last good checkpoint: step {last_checkpoint} in {checkpoint_dir}"
            if last_checkpoint is not None else "no checkpoint was written before it")
    super().__init__(f"training stopped: {metric} is {value} at step {step}; {kept}")


def fetch(pending: Sequence[dict[str, jax.Array]]) -> dict[str, np.ndarray]:
  """Device metrics of consecutive steps -> {name: float32[num_steps]} on host."""
  host = jax.device_get(list(pending))
  return {k: np.asarray([m[k] for m in host], np.float32) for k in host[0]}


def first_non_finite(metrics: Mapping[str, np.ndarray], first_step: int
                     ) -> tuple[int, str, float] | None:
  """(step, metric, value) of the earliest non-finite loss / grad_norm, or None."""
  worst = None
  for name in ("loss", "grad_norm"):
    if name not in metrics:
      continue
    bad = np.flatnonzero(~np.isfinite(metrics[name]))
    if bad.size and (worst is None or bad[0] < worst[0]):
      worst = (int(bad[0]), name, float(metrics[name][bad[0]]))
  if worst is None:
    return None
  return first_step + worst[0], worst[1], worst[2]


def _scalar_metadata():
  """TensorBoard's scalar-plugin metadata, built from TF's own protos.

  tf.summary.scalar needs the `tensorboard` package (not a dependency); writing
  the same event with tf.summary.write and this metadata is equivalent.
  """
  return summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
      data_class=summary_pb2.DATA_CLASS_SCALAR)


class MetricsLogger:
  """stdout lines with progress / throughput / ETA, and TensorBoard scalars."""

  def __init__(self, workdir: str, total_steps: int, start_step: int):
    self.total_steps = total_steps
    self._chief = jax.process_index() == 0
    self._writers = {}
    self.tensorboard_dir = os.path.join(os.path.abspath(workdir), "tensorboard")
    self._last_time = time.perf_counter()
    self._last_step = start_step

  def _writer(self, name: str):
    if name not in self._writers:
      self._writers[name] = tf.summary.create_file_writer(os.path.join(self.tensorboard_dir, name))
    return self._writers[name]

  def scalars(self, name: str, step: int, values: Mapping[str, float]) -> None:
    """Writes `values` to TensorBoard run `name` at `step` (process 0 only)."""
    if not self._chief:
      return
    with self._writer(name).as_default():
      for key, value in values.items():
        tf.summary.write(key, tf.constant(float(value), tf.float32), step=step,
                         metadata=_scalar_metadata())

  def train(self, step: int, metrics: Mapping[str, np.ndarray]) -> None:
    """Logs the window of steps ending at `step` (metrics are per step)."""
    now = time.perf_counter()
    steps = max(step - self._last_step, 1)
    seconds = max(now - self._last_time, 1e-9)
    self._last_time, self._last_step = now, step
    summary = {
        "loss": float(metrics["loss"][-1]),
        "cross_entropy": float(metrics["cross_entropy"][-1]),
        "accuracy": float(metrics["accuracy"][-1]),
        "learning_rate": float(metrics["learning_rate"][-1]),
        "grad_norm": float(metrics["grad_norm"][-1]),
        "examples_per_sec": float(np.sum(metrics["examples"][-steps:])) / seconds,
        "tokens_per_sec": float(np.sum(metrics["tokens"][-steps:])) / seconds,
        "steps_per_sec": steps / seconds,
    }
    self.scalars("train", step, summary)
    if self._chief:
      eta = datetime.timedelta(seconds=round((self.total_steps - step) * seconds / steps))
      print(f"step {step}/{self.total_steps} ({100.0 * step / self.total_steps:.0f}%) "
            f"loss {summary['loss']:.4f} lr {summary['learning_rate']:.3g} "
            f"ex/s {summary['examples_per_sec']:.1f} tok/s {summary['tokens_per_sec']:.0f} "
            f"ETA {eta}", flush=True)

  def eval(self, step: int, metrics: Mapping[str, float]) -> None:
    self.scalars("eval", step, metrics)
    if self._chief:
      text = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
      print(f"eval at step {step}: {text}", file=sys.stdout, flush=True)

  def message(self, text: str) -> None:
    if self._chief:
      print(text, file=sys.stdout, flush=True)

  def close(self) -> None:
    for writer in self._writers.values():
      writer.flush()
      writer.close()
