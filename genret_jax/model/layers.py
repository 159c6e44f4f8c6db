"""Building blocks of the T5 v1.1 / Flan-T5 network (flax.linen, T5X conventions).

Every parameter is created through `nn.with_logical_partitioning`, so it carries
logical axis names ('vocab', 'embed', 'mlp', 'heads', 'kv', 'relpos_buckets');
`genret_jax.model.partitioning` maps them onto the ('data', 'model') mesh.
Parameters are float32; computations run in the module's `dtype`.
"""

from __future__ import annotations

import functools
import string
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

Array = jax.Array
DType = jnp.dtype
Initializer = Callable[..., Array]

# T5X defaults: fan-in scaled normal kernels, unit-normal embeddings.
default_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
default_embed_init = nn.initializers.normal(stddev=1.0)


def einsum(spec: str, lhs: Array, rhs: Array) -> Array:
  """`jnp.einsum(spec, lhs, rhs)` for the model's matmuls, result in `lhs.dtype`.

  The products accumulate in float32 (`preferred_element_type`) and the
  gradients are two einsums of the same kind (a custom VJP), in float32 and
  bfloat16 alike:
  * bfloat16: on CPUs with AVX512-BF16 XLA:CPU runs bf16 x bf16 -> f32 dots at
    ~2x its f32 rate, but bf16 x bf16 -> bf16 at ~0.5x, and JAX's own transpose
    of an f32-accumulating dot would make the two backward products f32 x bf16
    (f32 speed); `python -m genret_jax.bench.matmul` measures all three.
  * float32: JAX's transpose of a dense layer leaves XLA:CPU a weight gradient
    dot with the cotangent transposed ([V, tokens]), which it runs on a slow
    path (17 ms instead of 2 ms for the [64 x 16 tokens] x [32, 2432] logits
    layer); the einsum here contracts the tokens of both operands in place.
    The train step of the cpu-default tiny T5 is ~15% faster, T5-small's ~19%.
  Every index of each operand must appear in the other operand or the output
  (true of the dense layers and attention).
  """
  return _einsum_f32_accumulate(spec, lhs, rhs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _einsum_f32_accumulate(spec: str, lhs: Array, rhs: Array) -> Array:
  return jnp.einsum(spec, lhs, rhs, preferred_element_type=jnp.float32).astype(lhs.dtype)


def _einsum_fwd(spec: str, lhs: Array, rhs: Array):
  return _einsum_f32_accumulate(spec, lhs, rhs), (lhs, rhs)


def _einsum_bwd(spec: str, residuals: tuple[Array, Array], ct: Array):
  lhs, rhs = residuals
  inputs, out = spec.split("->")
  a, b = inputs.split(",")
  ct = ct.astype(lhs.dtype)
  d_lhs = jnp.einsum(f"{out},{b}->{a}", ct, rhs, preferred_element_type=jnp.float32)
  d_rhs = jnp.einsum(f"{a},{out}->{b}", lhs, ct, preferred_element_type=jnp.float32)
  return d_lhs.astype(lhs.dtype), d_rhs.astype(rhs.dtype)


_einsum_f32_accumulate.defvjp(_einsum_fwd, _einsum_bwd)


def _canonicalize_tuple(x: int | Sequence[int]) -> tuple[int, ...]:
  return tuple(x) if isinstance(x, Sequence) else (x,)


class DenseGeneral(nn.Module):
  """A bias-free linear map over the trailing `axis` dims to `features`.

  Attributes:
    features: output feature shape (int or tuple).
    axis: input axes contracted (negative indices).
    kernel_axes: logical names of the kernel dims: axis dims then feature dims.
  """
  features: int | Sequence[int]
  axis: int | Sequence[int] = -1
  dtype: DType = jnp.float32
  kernel_init: Initializer = default_kernel_init
  kernel_axes: tuple[str, ...] = ()

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    features = _canonicalize_tuple(self.features)
    axis = tuple(a % inputs.ndim for a in _canonicalize_tuple(self.axis))
    kernel_shape = tuple(inputs.shape[a] for a in axis) + features
    kernel = self.param("kernel", nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
                        kernel_shape, jnp.float32)
    kernel = jnp.asarray(kernel, self.dtype)
    inputs = jnp.asarray(inputs, self.dtype)
    if axis != tuple(range(inputs.ndim - len(axis), inputs.ndim)):
      contract = (axis, tuple(range(len(axis))))   # not used by the network; JAX's own VJP
      return jax.lax.dot_general(inputs, kernel, (contract, ((), ())))
    letters = iter(string.ascii_letters)
    kept = "".join(next(letters) for _ in range(inputs.ndim - len(axis)))
    contracted = "".join(next(letters) for _ in axis)
    feats = "".join(next(letters) for _ in features)
    return einsum(f"{kept}{contracted},{contracted}{feats}->{kept}{feats}", inputs, kernel)


class Embed(nn.Module):
  """Token embedding table [num_embeddings, features] ('vocab', 'embed').

  `__call__` looks up int tokens; `attend` computes logits against the table
  (tied output head).
  """
  num_embeddings: int
  features: int
  dtype: DType = jnp.float32
  embedding_init: Initializer = default_embed_init

  def setup(self):
    self.embedding = self.param(
        "embedding", nn.with_logical_partitioning(self.embedding_init, ("vocab", "embed")),
        (self.num_embeddings, self.features), jnp.float32)

  def __call__(self, inputs: Array) -> Array:
    """int32[...]  ->  dtype[..., features]."""
    if not jnp.issubdtype(inputs.dtype, jnp.integer):
      raise ValueError(f"Embed expects integer token ids, got {inputs.dtype}")
    return jnp.take(jnp.asarray(self.embedding, self.dtype), inputs, axis=0)

  def attend(self, query: Array) -> Array:
    """dtype[..., features]  ->  dtype[..., num_embeddings]."""
    query = jnp.asarray(query, self.dtype)
    embedding = jnp.asarray(self.embedding, self.dtype)
    kept = string.ascii_lowercase[:query.ndim - 1]
    return einsum(f"{kept}y,zy->{kept}z", query, embedding)


class LayerNorm(nn.Module):
  """T5 layer norm: RMS normalisation with a learned scale, no mean, no bias.

  Statistics are computed in float32 whatever the activation dtype.
  """
  epsilon: float = 1e-6
  dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    features = x.shape[-1]
    x32 = jnp.asarray(x, jnp.float32)
    mean2 = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = jnp.asarray(x32 * jax.lax.rsqrt(mean2 + self.epsilon), self.dtype)
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                       (features,), jnp.float32)
    return y * jnp.asarray(scale, self.dtype)


def gelu_tanh(x: Array) -> Array:
  """HF `gelu_new` / T5X `gelu`: the tanh approximation of GELU."""
  return nn.gelu(x, approximate=True)


_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": gelu_tanh,
    "gelu_new": gelu_tanh,
    "gelu_exact": lambda x: nn.gelu(x, approximate=False),
    "relu": nn.relu,
    "silu": nn.silu,
    "linear": lambda x: x,
}


def activation_fn(name: str) -> Callable[[Array], Array]:
  if name not in _ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; known: {sorted(_ACTIVATIONS)}")
  return _ACTIVATIONS[name]


class MlpBlock(nn.Module):
  """Position-wise feed-forward: prod_i act_i(x W_i) then W_o (gated when 2 acts).

  One activation -> kernel `wi`; several -> `wi_0`, `wi_1`, ... (T5X names).
  """
  intermediate_dim: int
  activations: Sequence[str] = ("gelu", "linear")
  dropout_rate: float = 0.0
  dtype: DType = jnp.float32
  kernel_init: Initializer = default_kernel_init

  @nn.compact
  def __call__(self, inputs: Array, deterministic: bool = True) -> Array:
    """dtype[B, L, embed]  ->  dtype[B, L, embed]."""
    x = None
    for i, act in enumerate(self.activations):
      name = "wi" if len(self.activations) == 1 else f"wi_{i}"
      h = DenseGeneral(self.intermediate_dim, dtype=self.dtype, kernel_init=self.kernel_init,
                       kernel_axes=("embed", "mlp"), name=name)(inputs)
      h = activation_fn(act)(h)
      x = h if x is None else x * h
    x = nn.with_logical_constraint(x, ("batch", "length", "mlp"))
    x = nn.Dropout(rate=self.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    out = DenseGeneral(inputs.shape[-1], dtype=self.dtype, kernel_init=self.kernel_init,
                       kernel_axes=("mlp", "embed"), name="wo")(x)
    return out


def relative_position_bucket(relative_position: Array, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> Array:
  """T5's bucketing of (key position - query position) -> int32 bucket id.

  Half the buckets (bidirectional) or all of them (causal) cover exact small
  distances, the rest grow logarithmically up to `max_distance`. Computed in
  float32 like Mesh TensorFlow and Hugging Face, so buckets match exactly.
  """
  relative_position = relative_position.astype(jnp.int32)
  ret = jnp.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    ret += (relative_position > 0).astype(jnp.int32) * num_buckets
    n = jnp.abs(relative_position)
  else:
    n = -jnp.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  log_ratio = jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact)
  val_if_large = max_exact + (
      log_ratio / np.float32(np.log(max_distance / max_exact)) * (num_buckets - max_exact)
  ).astype(jnp.int32)
  val_if_large = jnp.minimum(val_if_large, num_buckets - 1)
  return ret + jnp.where(is_small, n, val_if_large)


class RelativePositionBiases(nn.Module):
  """Per-head scalar attention bias from bucketed relative positions.

  Table `rel_embedding`: float32[num_heads, num_buckets] ('heads', 'relpos_buckets').
  """
  num_buckets: int
  max_distance: int
  num_heads: int
  dtype: DType = jnp.float32
  embedding_init: Initializer = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")

  @nn.compact
  def __call__(self, query_positions: Array, key_positions: Array, bidirectional: bool) -> Array:
    """int32[Bq, Q], int32[Bk, K] (Bq, Bk in {1, B})  ->  dtype[B, H, Q, K]."""
    relative = key_positions[:, None, :] - query_positions[:, :, None]  # [B, Q, K]
    buckets = relative_position_bucket(relative, bidirectional, self.num_buckets,
                                       self.max_distance)
    table = self.param(
        "rel_embedding",
        nn.with_logical_partitioning(self.embedding_init, ("heads", "relpos_buckets")),
        (self.num_heads, self.num_buckets), jnp.float32)
    table = jnp.asarray(table, self.dtype)
    bias = jnp.take(table, buckets, axis=1)  # [H, B, Q, K]
    return jnp.transpose(bias, (1, 0, 2, 3))
