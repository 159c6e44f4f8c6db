"""Learning-rate schedules and the optax optimizer, built from the `train` block."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax

from genret_jax.errors import ConfigError

OPTIMIZERS = ("adamw", "adafactor")
SCHEDULES = ("constant", "rsqrt", "cosine")


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Raises ConfigError (naming the `train.` key) for bad optimizer settings."""
  if cfg.optimizer not in OPTIMIZERS:
    raise ConfigError("train.optimizer", f"{cfg.optimizer!r} is not one of {OPTIMIZERS}")
  if cfg.schedule not in SCHEDULES:
    raise ConfigError("train.schedule", f"{cfg.schedule!r} is not one of {SCHEDULES}")
  if not cfg.learning_rate > 0:
    raise ConfigError("train.learning_rate", f"must be > 0, got {cfg.learning_rate}")
  if cfg.warmup_steps < 0:
    raise ConfigError("train.warmup_steps", f"must be >= 0, got {cfg.warmup_steps}")
  if cfg.grad_clip_norm < 0:
    raise ConfigError("train.grad_clip_norm", f"must be >= 0, got {cfg.grad_clip_norm}")
  if cfg.weight_decay < 0:
    raise ConfigError("train.weight_decay", f"must be >= 0, got {cfg.weight_decay}")


def learning_rate_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """step (int32 scalar, 0-based update count) -> float32 learning rate.

  Update s (1-based: s = step + 1) gets learning_rate * ramp * decay with
  ramp = min(1, s / warmup_steps) (linear warmup; 1 without warmup) and decay
  1 for `constant`, sqrt(warmup / max(s, warmup)) for `rsqrt` (T5's inverse
  square root), and for `cosine` a half cosine from 1 at s = warmup to
  `cosine_end_factor` at s = num_steps.
  """
  peak = float(cfg.learning_rate)
  warmup = int(cfg.warmup_steps)
  total = max(int(cfg.num_steps), warmup + 1)
  end = float(cfg.cosine_end_factor)
  kind = cfg.schedule

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    ramp = jnp.minimum(1.0, (step + 1.0) / warmup) if warmup else 1.0
    if kind == "rsqrt":
      decay = jnp.sqrt(max(warmup, 1) / jnp.maximum(step + 1.0, max(warmup, 1)))
    elif kind == "cosine":
      progress = jnp.clip((step + 1.0 - warmup) / (total - warmup), 0.0, 1.0)
      decay = end + (1.0 - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    else:
      decay = 1.0
    return peak * ramp * decay

  return schedule


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Global-norm clipping (if on) followed by AdamW or Adafactor on the schedule."""
  validate(cfg)
  lr = learning_rate_schedule(cfg)
  if cfg.optimizer == "adamw":
    opt = optax.adamw(lr, b1=cfg.adam_b1, b2=cfg.adam_b2, eps=cfg.adam_eps,
                      weight_decay=cfg.weight_decay)
  else:
    opt = optax.adafactor(
        lr, decay_rate=cfg.adafactor_decay_rate,
        momentum=cfg.adafactor_momentum or None,
        weight_decay_rate=cfg.weight_decay or None,
        multiply_by_parameter_scale=True, clipping_threshold=1.0)
  if cfg.grad_clip_norm:
    opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), opt)
  return opt
