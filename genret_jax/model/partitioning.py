"""Device mesh, logical axis rules and shardings (T5X-style partitioning).

The mesh has two axes: 'data' (batch parallelism) and 'model' (tensor
parallelism over heads / mlp / vocab). Parameters and activations carry
logical axis names (see genret_jax.model.layers); the rules of the `mesh`
config block (`mesh.logical_axis_rules`, default LOGICAL_AXIS_RULES) map them
onto mesh axes. The same code runs on 1 device (a 1x1 mesh), 8 fake CPU
devices, or many hosts: only the mesh config changes.

Shardings of parameters are built one way, `params_shardings` (from the
abstract parameter tree); `genret_jax.train.state` derives the whole
TrainState's from it.
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
from genret_jax.model import config as model_config

MESH_AXES = model_config.MESH_AXES
LOGICAL_AXIS_RULES = model_config.LOGICAL_AXIS_RULES
Rules = Sequence[tuple[str, str | None]]


def logical_axis_rules(mesh_config: Any) -> tuple[tuple[str, str | None], ...]:
  """The validated rules of a `mesh` config block (see model.config.logical_axis_rules)."""
  return model_config.logical_axis_rules(mesh_config)


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
  logical_axis_rules(mesh_config)   # a bad rule fails here, before any work
  auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)


def logical_to_mesh_shardings(logical_spec_tree: Any, mesh: Mesh,
                              rules: Rules = LOGICAL_AXIS_RULES
                              ) -> Any:
  """A tree of logical PartitionSpecs -> the same tree of NamedShardings on `mesh`."""
  return nn.logical_to_mesh_sharding(logical_spec_tree, mesh, tuple(rules))


@contextlib.contextmanager
def axis_rules(mesh: Mesh, rules: Rules = LOGICAL_AXIS_RULES
               ) -> Iterator[None]:
  """Context in which `nn.with_logical_constraint` on activations takes effect.

  Trace (jit) the model inside it so activation constraints follow `rules`.
  """
  with jax.set_mesh(mesh), nn.logical_axis_rules(tuple(rules)):
    yield


def params_shardings(abstract_params: Any, mesh: Mesh, rules: Rules = LOGICAL_AXIS_RULES
                     ) -> Any:
  """NamedShardings of a parameter tree from its logical axis names.

  Args:
    abstract_params: the boxed 'params' of `module.init` (leaves
      `nn.LogicallyPartitioned` of arrays or ShapeDtypeStructs, e.g. from
      `jax.eval_shape`), so no parameter needs to be computed.
    mesh: the ('data', 'model') mesh.
    rules: (logical axis, mesh axis or None) pairs.
  Returns:
    The unboxed tree's structure with a NamedSharding per leaf.
  Raises:
    ConfigError naming the mesh axis when a dimension does not divide it.
  """
  shardings = logical_to_mesh_shardings(nn.get_partition_spec(abstract_params), mesh, rules)
  check_divisible(nn.unbox(abstract_params), shardings)
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
