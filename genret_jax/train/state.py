"""TrainState and its sharded initialisation.

Parameters carry flax logical axis names; `logical_rules` (the `mesh` block's
`logical_axis_rules`) map them onto the ('data', 'model') mesh through
`partitioning.params_shardings`, the one place parameter shardings are built. Optimizer-state
leaves shaped like their parameter take the parameter's sharding; the rest
(step counts, Adafactor's factored row/column statistics) are replicated.
Initialisation is `jit(init, out_shardings=...)`, so no parameter is ever
materialised unsharded.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding

from genret_jax.model import partitioning

PyTree = Any
LogicalRules = Sequence[tuple[str, Any]]


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; saved whole in checkpoints.

  Attributes:
    step: int32[] number of optimizer updates applied so far.
    params: float32 parameter tree (unboxed: plain arrays).
    opt_state: the optax state for `params`.
    rng: uint32[2] PRNG key; step s uses fold_in(rng, s) for dropout.
  """
  step: jax.Array
  params: PyTree
  opt_state: PyTree
  rng: jax.Array


def dummy_batch(batch_size: int, input_length: int, target_length: int) -> dict[str, jax.Array]:
  """int32 all-ones model inputs of the given shapes (for init / eval_shape)."""
  enc = jnp.ones((batch_size, input_length), jnp.int32)
  dec = jnp.ones((batch_size, target_length), jnp.int32)
  return {"encoder_input_tokens": enc, "decoder_input_tokens": dec,
          "decoder_target_tokens": dec}


def _boxed_params_fn(model: nn.Module, input_length: int, target_length: int
                     ) -> Callable[[jax.Array], PyTree]:
  def init(rng):
    batch = dummy_batch(1, input_length, target_length)
    variables = model.init({"params": rng, "dropout": rng}, batch["encoder_input_tokens"],
                           batch["decoder_input_tokens"], batch["decoder_target_tokens"],
                           enable_dropout=False)
    return variables["params"]
  return init


def _opt_state_shardings(abstract_opt: PyTree, abstract_params: PyTree, param_shardings: PyTree,
                         replicated: NamedSharding) -> PyTree:
  """Shardings for an optax state: per-parameter leaves follow their parameter."""
  params_def = jax.tree_util.tree_structure(abstract_params)
  param_leaves = jax.tree_util.tree_leaves(abstract_params)
  sharding_leaves = jax.tree_util.tree_leaves(
      param_shardings, is_leaf=lambda x: isinstance(x, NamedSharding))

  def is_params_like(node):
    return jax.tree_util.tree_structure(node) == params_def

  def assign(node):
    if not is_params_like(node):
      return replicated  # a lone leaf (count, schedule state, empty placeholder)
    leaves = jax.tree_util.tree_leaves(node)
    out = [s if leaf.shape == p.shape else replicated
           for leaf, p, s in zip(leaves, param_leaves, sharding_leaves)]
    return jax.tree_util.tree_unflatten(params_def, out)

  return jax.tree_util.tree_map(assign, abstract_opt, is_leaf=is_params_like)


def state_shardings(model: nn.Module, tx: optax.GradientTransformation, mesh: Mesh,
                    logical_rules: LogicalRules, input_length: int, target_length: int
                    ) -> tuple[TrainState, TrainState]:
  """(abstract TrainState of ShapeDtypeStructs, TrainState of NamedShardings)."""
  replicated = partitioning.replicated(mesh)
  boxed = jax.eval_shape(_boxed_params_fn(model, input_length, target_length),
                         jax.random.PRNGKey(0))
  param_shardings = partitioning.params_shardings(boxed, mesh, logical_rules)
  abstract_params = nn.unbox(boxed)
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  shardings = TrainState(
      step=replicated, params=param_shardings,
      opt_state=_opt_state_shardings(abstract_opt, abstract_params, param_shardings, replicated),
      rng=replicated)
  abstract = TrainState(
      step=jax.ShapeDtypeStruct((), jnp.int32), params=abstract_params, opt_state=abstract_opt,
      rng=jax.ShapeDtypeStruct((2,), jnp.uint32))
  abstract = jax.tree_util.tree_map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  return abstract, shardings


def init_train_state(model: nn.Module, tx: optax.GradientTransformation, seed: int,
                     shardings: TrainState, input_length: int, target_length: int,
                     init_params: PyTree | None = None) -> TrainState:
  """A fresh TrainState created directly in its shardings.

  Args:
    seed: parameter init and dropout seed; the same seed gives the same
      parameters on any mesh (threefry is partitionable).
    init_params: optional parameters to start from (e.g. a converted Hugging
      Face checkpoint), placed into the parameter shardings.
  """
  boxed_fn = _boxed_params_fn(model, input_length, target_length)

  def init(rng, params):
    init_rng, train_rng = jax.random.split(rng)
    if params is None:
      params = nn.unbox(boxed_fn(init_rng))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=train_rng)

  if init_params is not None:
    init_params = jax.device_put(init_params, shardings.params)
  return jax.jit(init, out_shardings=shardings)(jax.random.PRNGKey(seed), init_params)
