"""The jitted train and eval steps (pure functions of state and batch).

A batch is the dict of seqio EncDecFeatureConverter features, each int32
[B, L] sharded over the mesh's 'data' axis: encoder_input_tokens [B, S],
decoder_input_tokens / decoder_target_tokens / decoder_loss_weights [B, T],
plus, when packed, encoder/decoder_segment_ids and encoder/decoder_positions.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding

from genret_jax.model import partitioning
from genret_jax.train import losses
from genret_jax.train.state import TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

# Packing's encoder/decoder_positions are not needed: the network's relative
# bias depends only on offsets within a segment (model/network.py).
_OPTIONAL_FEATURES = ("encoder_segment_ids", "decoder_segment_ids")


def _logits(model: nn.Module, params: Any, batch: Batch, dropout_rng: jax.Array | None
            ) -> jax.Array:
  """float32 [B, T, V] teacher-forced logits."""
  kwargs = {k: batch[k] for k in _OPTIONAL_FEATURES if k in batch}
  rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}
  return model.apply({"params": params}, batch["encoder_input_tokens"],
                     batch["decoder_input_tokens"], batch["decoder_target_tokens"],
                     enable_dropout=dropout_rng is not None, rngs=rngs, **kwargs)


def _batch_counts(batch: Batch) -> tuple[jax.Array, jax.Array]:
  """(examples, non-padding tokens) of a batch as float32 scalars.

  A packed row holds max(decoder_segment_ids) examples; an unpacked row one
  example when it has any target token.
  """
  if "decoder_segment_ids" in batch:
    examples = jnp.sum(jnp.max(batch["decoder_segment_ids"], axis=-1))
  else:
    examples = jnp.sum(jnp.any(batch["decoder_target_tokens"] > 0, axis=-1))
  tokens = (jnp.sum(batch["encoder_input_tokens"] > 0)
            + jnp.sum(batch["decoder_target_tokens"] > 0))
  return examples.astype(jnp.float32), tokens.astype(jnp.float32)


def _split_micro_batches(batch: Batch, num_micro: int) -> Batch:
  """[B, L] -> [num_micro, B / num_micro, L]; micro-batch i takes rows i, i+k, ...

  Strided rows keep every micro-batch spread evenly over the 'data' shards.
  """
  def split(x):
    x = x.reshape((x.shape[0] // num_micro, num_micro) + x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree_util.tree_map(split, batch)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, cfg: ml_collections.ConfigDict
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """The un-jitted step: (state, batch) -> (state with step+1, metrics).

  The loss is the weighted token cross-entropy (+ z-loss) summed over the whole
  global batch (all micro-batches) and divided once by the summed loss weights,
  so it is a per-token mean whatever the accumulation or mesh.
  Metrics (float32 scalars): loss, cross_entropy, z_loss, accuracy,
  learning_rate, grad_norm (before clipping), examples, tokens.
  """
  num_micro = int(cfg.grad_accum_steps)

  def loss_sums(params, batch, dropout_rng):
    logits = _logits(model, params, batch, dropout_rng)
    sums = losses.cross_entropy_sums(
        logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"],
        z_loss=cfg.z_loss, label_smoothing=cfg.label_smoothing)
    return sums.cross_entropy + sums.z_loss, sums

  grad_fn = jax.value_and_grad(loss_sums, has_aux=True)

  def step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    if num_micro == 1:
      (_, sums), grads = grad_fn(state.params, batch, dropout_rng)
    else:
      micro = _split_micro_batches(batch, num_micro)

      def body(carry, xs):
        grads_acc, sums_acc = carry
        index, mb = xs
        (_, s), g = grad_fn(state.params, mb, jax.random.fold_in(dropout_rng, index))
        return (jax.tree_util.tree_map(jnp.add, grads_acc, g),
                jax.tree_util.tree_map(jnp.add, sums_acc, s)), None

      zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
      zero_sums = losses.LossSums(*(jnp.zeros((), jnp.float32) for _ in range(4)))
      (grads, sums), _ = jax.lax.scan(body, (zeros, zero_sums),
                                      (jnp.arange(num_micro), micro))
    denom = jnp.maximum(sums.weight, 1.0)
    grads = jax.tree_util.tree_map(lambda g: g / denom, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    examples, tokens = _batch_counts(batch)
    metrics = {
        "loss": (sums.cross_entropy + sums.z_loss) / denom,
        "cross_entropy": sums.cross_entropy / denom,
        "z_loss": sums.z_loss / denom,
        "accuracy": sums.correct / denom,
        "learning_rate": jnp.asarray(schedule(state.step), jnp.float32),
        "grad_norm": optax.global_norm(grads),
        "examples": examples,
        "tokens": tokens,
    }
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics

  return step


def make_eval_step(model: nn.Module) -> Callable[[Any, Batch], Metrics]:
  """(params, batch) -> float32 sums: cross_entropy, weight, correct,
  sequences (rows with a target), sequences_correct (every target token right).

  Rows are unpacked examples; all-zero padding rows count nowhere.
  """
  def step(params, batch: Batch) -> Metrics:
    logits = _logits(model, params, batch, None)
    targets = batch["decoder_target_tokens"]
    weights = batch["decoder_loss_weights"].astype(jnp.float32)
    sums = losses.cross_entropy_sums(logits, targets, weights)
    has_target = jnp.sum(weights, axis=-1) > 0
    wrong = jnp.sum((losses.first_argmax(logits) != targets) * weights, axis=-1)
    return {
        "cross_entropy": sums.cross_entropy, "weight": sums.weight, "correct": sums.correct,
        "sequences": jnp.sum(has_target).astype(jnp.float32),
        "sequences_correct": jnp.sum(has_target & (wrong == 0)).astype(jnp.float32),
    }
  return step


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Rows over the 'data' mesh axis, everything else replicated."""
  return partitioning.data_sharding(mesh)


class JittedStep:
  """A `jax.jit` of a step that traces and runs under its mesh's logical axis rules.

  Calling it runs the step. `lower(*args)` lowers it with exactly the jit
  settings and axis rules training uses, for an ahead-of-time
  `.lower(...).compile()` on abstract inputs (jax.ShapeDtypeStruct with
  shardings): nothing is re-created, so what compiles is what trains.

  Attributes:
    fn: the un-jitted step.
    jitted: `jax.jit(fn, **jit_kwargs)`.
    jit_kwargs: the jit settings (in_shardings, out_shardings and, for the
      train step, donate_argnums).
    mesh, rules: the mesh and logical axis rules tracing happens under.
  """

  def __init__(self, fn: Callable[..., Any], mesh: Mesh, rules, **jit_kwargs):
    self.fn = fn
    self.mesh = mesh
    self.rules = rules
    self.jit_kwargs = dict(jit_kwargs)
    self.jitted = jax.jit(fn, **jit_kwargs)

  def __call__(self, *args):
    with partitioning.axis_rules(self.mesh, self.rules):
      return self.jitted(*args)

  def lower(self, *args) -> jax.stages.Lowered:
    """`jitted.lower(*args)` under the axis rules; `.compile()` the result."""
    with partitioning.axis_rules(self.mesh, self.rules):
      return self.jitted.lower(*args)


def train_step_jit_kwargs(mesh: Mesh, shardings: TrainState) -> dict[str, Any]:
  """The jax.jit settings of the train step: state sharded by `shardings`, the
  batch over 'data', metrics replicated, the state donated, and the mesh's
  partitioning.compiler_options."""
  return {"in_shardings": (shardings, batch_sharding(mesh)),
          "out_shardings": (shardings, partitioning.replicated(mesh)),
          "donate_argnums": (0,),
          "compiler_options": partitioning.compiler_options(mesh)}


def jit_train_step(step_fn, mesh: Mesh, rules, shardings: TrainState) -> JittedStep:
  """jax.jit with state/batch shardings and the state donated (train_step_jit_kwargs).

  Tracing happens under the mesh and the logical axis rules, so the model's
  activation constraints (nn.with_logical_constraint) bind to this mesh. The
  returned JittedStep is called as (state, batch) -> (state, metrics); its
  `lower(abstract_state, abstract_batch).compile()` is the same program AOT.
  """
  return JittedStep(step_fn, mesh, rules, **train_step_jit_kwargs(mesh, shardings))


def jit_eval_step(step_fn, mesh: Mesh, rules, param_shardings) -> JittedStep:
  """jax.jit of the eval step; params are read, not donated."""
  return JittedStep(step_fn, mesh, rules,
                    in_shardings=(param_shardings, batch_sharding(mesh)),
                    out_shardings=partitioning.replicated(mesh),
                    compiler_options=partitioning.compiler_options(mesh))
