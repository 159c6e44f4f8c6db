"""Device mesh, logical axis rules and shardings (T5X-style partitioning).

The mesh has two axes: 'data' (batch parallelism) and 'model' (tensor
parallelism over heads / mlp / vocab). Parameters and activations carry
logical axis names (see genret_jax.model.layers); LOGICAL_AXIS_RULES maps them
onto mesh axes. The same code runs on 1 device (a 1x1 mesh), 8 fake CPU
devices, or many hosts: only the mesh config changes.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from genret_jax.errors import ConfigError

MESH_AXES = ("data", "model")

# (logical axis, mesh axis or None), in order of precedence (T5X's standard rules).
LOGICAL_AXIS_RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("joined_kv", "model"),
    ("kv", None),
    ("embed", None),
    ("length", None),
    ("relpos_buckets", None),
)


def mesh_shape(mesh_config: Any, num_devices: int) -> tuple[int, int]:
  """(data, model) sizes from the `mesh` config block; -1 = all remaining devices.

  Raises:
    ConfigError: sizes that are not positive or -1, two -1s, or a product that
      does not equal the number of devices.
  """
  sizes = {}
  for axis in MESH_AXES:
    value = mesh_config[axis]
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or \
        (value < 1 and value != -1):
      raise ConfigError(f"mesh.{axis}", f"must be a positive int or -1, got {value!r}")
    sizes[axis] = int(value)
  free = [a for a in MESH_AXES if sizes[a] == -1]
  if len(free) > 1:
    raise ConfigError(f"mesh.{free[1]}", "only one mesh axis may be -1 (all remaining devices)")
  fixed = math.prod(s for s in sizes.values() if s != -1)
  if free:
    if num_devices % fixed:
      raise ConfigError(f"mesh.{free[0]}", f"{num_devices} devices are not divisible by the "
                        f"other mesh axes' size {fixed}")
    sizes[free[0]] = num_devices // fixed
  elif fixed != num_devices:
    raise ConfigError("mesh", f"data x model = {sizes['data']} x {sizes['model']} = {fixed} "
                      f"but there are {num_devices} devices")
  return sizes["data"], sizes["model"]


def make_mesh(mesh_config: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ('data', 'model') mesh over `devices` (default: all global devices)."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_config, len(devices))
  auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)


def logical_to_mesh_shardings(logical_spec_tree: Any, mesh: Mesh,
                              rules: Sequence[tuple[str, str | None]] = LOGICAL_AXIS_RULES
                              ) -> Any:
  """A tree of logical PartitionSpecs -> the same tree of NamedShardings on `mesh`."""
  return nn.logical_to_mesh_sharding(logical_spec_tree, mesh, tuple(rules))


@contextlib.contextmanager
def axis_rules(mesh: Mesh, rules: Sequence[tuple[str, str | None]] = LOGICAL_AXIS_RULES
               ) -> Iterator[None]:
  """Context in which `nn.with_logical_constraint` on activations takes effect.

  Trace (jit) the model inside it so activation constraints follow `rules`.
  """
  with jax.set_mesh(mesh), nn.logical_axis_rules(tuple(rules)):
    yield


def _abstract_variables(module: nn.Module, init_args: Sequence[Any],
                        init_kwargs: dict[str, Any] | None) -> Any:
  init_kwargs = dict(init_kwargs or {})
  return jax.eval_shape(
      lambda: module.init(jax.random.PRNGKey(0), *init_args, **init_kwargs))


def params_logical_specs(module: nn.Module, init_args: Sequence[Any],
                         init_kwargs: dict[str, Any] | None = None) -> Any:
  """The logical PartitionSpec of every parameter (no parameter is computed)."""
  return nn.get_partition_spec(_abstract_variables(module, init_args, init_kwargs)["params"])


def params_shardings(module: nn.Module, mesh: Mesh, init_args: Sequence[Any],
                     init_kwargs: dict[str, Any] | None = None,
                     rules: Sequence[tuple[str, str | None]] = LOGICAL_AXIS_RULES) -> Any:
  """NamedShardings of the (unboxed) 'params' tree of `module.init(rng, *init_args)`."""
  abstract = nn.unbox(_abstract_variables(module, init_args, init_kwargs)["params"])
  shardings = logical_to_mesh_shardings(params_logical_specs(module, init_args, init_kwargs),
                                        mesh, rules)
  check_divisible(abstract, shardings)
  return shardings


def check_divisible(abstract_tree: Any, shardings: Any) -> None:
  """Raises ConfigError when an array dim is not divisible by its mesh axes' size."""
  def check(path, leaf, sharding):
    for dim, (size, axes) in enumerate(zip(leaf.shape, sharding.spec)):
      if axes is None:
        continue
      axes = (axes,) if isinstance(axes, str) else tuple(axes)
      split = math.prod(sharding.mesh.shape[a] for a in axes)
      if size % split:
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        raise ConfigError(f"mesh.{axes[0]}", f"parameter {name} dim {dim} has size {size}, "
                          f"not divisible by the mesh axis size {split}")
  jax.tree_util.tree_map_with_path(check, abstract_tree, shardings)


def sharded_init(module: nn.Module, rng: jax.Array, mesh: Mesh, *init_args: Any,
                 rules: Sequence[tuple[str, str | None]] = LOGICAL_AXIS_RULES,
                 **init_kwargs: Any) -> Any:
  """Initialises the 'params' directly into their shardings (never unsharded).

  Returns the unboxed 'params' tree of jax.Arrays, laid out as
  `params_shardings` says. Values equal an unsharded `module.init` with the
  same rng.
  """
  shardings = params_shardings(module, mesh, init_args, init_kwargs, rules)

  def init(rng, *args):
    return nn.unbox(module.init(rng, *args, **init_kwargs)["params"])

  with axis_rules(mesh, rules):
    return jax.jit(init, out_shardings=shardings)(rng, *init_args)


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of [batch, ...] arrays: batch split over 'data', the rest replicated."""
  return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  """A fully replicated sharding on `mesh` (scalars, RNG keys, step counters)."""
  return NamedSharding(mesh, PartitionSpec())


# XLA:CPU in jaxlib 0.10 hands reductions and elementwise fusions to YNNPACK.
# Its reductions over leading axes are ~9x slower than XLA's own loops (the
# batch sum of [64, 4, 128, 128] attention-bias gradients: 41 ms vs 4.6 ms),
# see jax-ml/jax#37465. Keeping only YNNPACK's matmuls made the tiny T5 train
# step 1.3x faster on a 2-core CPU (docs/benchmarks.md, "Train step on CPU").
CPU_COMPILER_OPTIONS: dict[str, str] = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


def compiler_options(devices: Sequence[jax.Device] | Mesh | None = None) -> dict[str, str]:
  """XLA options for jitting the hot steps (training, evaluation) on `devices`.

  CPU_COMPILER_OPTIONS when every device is a CPU, else none. Pass the result
  as `jax.jit(..., compiler_options=...)`. `devices`: a list, a Mesh, or None
  for jax.devices().
  """
  if devices is None:
    devices = jax.devices()
  elif isinstance(devices, Mesh):
    devices = devices.devices.flat
  return dict(CPU_COMPILER_OPTIONS) if all(d.platform == "cpu" for d in devices) else {}
