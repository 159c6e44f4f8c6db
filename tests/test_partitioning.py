"""Mesh from config, logical axis rules, sharded init on 8 fake CPU devices."""

import jax
import ml_collections
import numpy as np
import optax
import pytest
from flax import linen as nn
from jax.sharding import PartitionSpec as P

from genret_jax.errors import ConfigError
from genret_jax.model import config as model_config
from genret_jax.model import network, partitioning
from genret_jax.train import state as state_lib


def _mesh_config(data, model):
  c = model_config.mesh_config()
  c.data, c.model = data, model
  return c


def test_eight_fake_devices():
  assert jax.device_count() == 8


@pytest.mark.parametrize("data,model,shape", [(-1, 1, (8, 1)), (2, 4, (2, 4)), (-1, 2, (4, 2)),
                                              (1, -1, (1, 8)), (8, 1, (8, 1))])
def test_make_mesh_shapes(data, model, shape):
  mesh = partitioning.make_mesh(_mesh_config(data, model))
  assert mesh.axis_names == ("data", "model")
  assert tuple(mesh.devices.shape) == shape
  assert sorted(d.id for d in mesh.devices.flat) == list(range(8))


def test_default_mesh_config_uses_every_device():
  mesh = partitioning.make_mesh(model_config.mesh_config())
  assert dict(mesh.shape) == {"data": 8, "model": 1}
  one = partitioning.make_mesh(model_config.mesh_config(), devices=jax.devices()[:1])
  assert dict(one.shape) == {"data": 1, "model": 1}


@pytest.mark.parametrize("data,model,key,message", [
    (3, -1, "mesh.model", "8 devices are not divisible by the other mesh axes' size 3"),
    (2, 2, "mesh", "data x model = 2 x 2 = 4 but there are 8 devices"),
    (-1, -1, "mesh.model", "only one mesh axis may be -1"),
    (0, 8, "mesh.data", "must be a positive int or -1, got 0"),
    (2.0, 4, "mesh.data", "must be a positive int or -1, got 2.0"),
])
def test_bad_mesh_config(data, model, key, message):
  c = ml_collections.ConfigDict({"data": data, "model": model})
  with pytest.raises(ConfigError, match=f"config.{key}: {message}") as e:
    partitioning.make_mesh(c)
  assert e.value.key == key


def test_logical_rules_map_to_mesh_axes():
  mesh = partitioning.make_mesh(_mesh_config(2, 4))
  specs = {"emb": P("vocab", "embed"), "q": P("embed", "heads", "kv"), "wo": P("mlp", "embed"),
           "act": P("batch", "length", "embed"), "joined": P("embed", "joined_kv"),
           "rel": P("heads", "relpos_buckets")}
  shardings = partitioning.logical_to_mesh_shardings(specs, mesh)
  assert shardings["emb"].spec == P("model", None)
  assert shardings["q"].spec == P(None, "model", None)
  assert shardings["wo"].spec == P("model", None)
  assert shardings["act"].spec == P("data", None, None)
  assert shardings["joined"].spec == P(None, "model")
  assert shardings["rel"].spec == P("model", None)
  assert partitioning.data_sharding(mesh).spec == P("data")
  assert partitioning.replicated(mesh).spec == P()


def _inputs():
  tokens = np.arange(1, 8 * 6 + 1, dtype=np.int32).reshape(8, 6) % 120 + 1
  return tokens, tokens[:, :4], tokens[:, :4]


def _abstract_params(model):
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *_inputs(),
                                           enable_dropout=False))["params"]


@pytest.mark.slow  # two RNG-heavy init compilations: ~15 s on an idle 2-core CPU
def test_sharded_init_equals_one_device_and_follows_rules():
  # One layer each way keeps the two init compilations (RNG-heavy) short.
  model = network.Transformer(network.t5_config("tiny", 300, num_encoder_layers=1,
                                                num_decoder_layers=1))
  mesh = partitioning.make_mesh(_mesh_config(2, 4))
  one = partitioning.make_mesh(_mesh_config(1, 1), devices=jax.devices()[:1])
  args = _inputs()
  tx = optax.sgd(0.1)
  rules = partitioning.LOGICAL_AXIS_RULES

  def init(m):
    _, shardings = state_lib.state_shardings(model, tx, m, rules, 6, 4)
    return state_lib.init_train_state(model, tx, 42, shardings, 6, 4).params, shardings

  sharded, shardings = init(mesh)
  reference, _ = init(one)
  assert jax.tree_util.tree_structure(sharded) == jax.tree_util.tree_structure(reference)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a),
                                                                    np.asarray(b)),
                         sharded, reference)

  got = jax.tree_util.tree_map(lambda x: x.sharding, sharded)
  assert got == shardings.params
  assert got == partitioning.params_shardings(_abstract_params(model), mesh, rules)
  expected = {
      "token_embedder/embedding": P("model", None),                        # vocab
      "encoder/layers_0/attention/query/kernel": P(None, "model", None),   # heads
      "encoder/layers_0/attention/out/kernel": P("model", None, None),
      "decoder/layers_0/mlp/wi_0/kernel": P(None, "model"),                # mlp
      "decoder/layers_0/mlp/wo/kernel": P("model", None),
      "decoder/logits_dense/kernel": P(None, "model"),                      # vocab
      "decoder/relpos_bias/rel_embedding": P("model", None),
      "encoder/encoder_norm/scale": P(None),                               # embed: replicated
  }
  flat = {jax.tree_util.keystr(p, simple=True, separator="/"): x.sharding.spec
          for p, x in jax.tree_util.tree_leaves_with_path(sharded)}
  for name, spec in expected.items():
    assert flat[name] == spec, name
  # Each device holds only its shard: 1/4 of a model-sharded kernel.
  kernel = sharded["decoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
  assert {s.data.shape for s in kernel.addressable_shards} == {(32, 16)}
  # The model runs on the sharded params with activation constraints active.
  batch = [jax.device_put(a, partitioning.data_sharding(mesh)) for a in args]
  with partitioning.axis_rules(mesh):
    logits = jax.jit(lambda p, *a: model.apply({"params": p}, *a, enable_dropout=False))(
        sharded, *batch)
  assert logits.sharding.spec == P("data", None, "model")
  reference_logits = jax.jit(lambda p: model.apply({"params": p}, *args,
                                                  enable_dropout=False))(reference)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(reference_logits), rtol=1e-5, atol=1e-5)


def test_indivisible_parameter_is_a_config_error():
  model = network.Transformer(network.t5_config("tiny", 300, num_heads=2, head_dim=16))
  mesh = partitioning.make_mesh(_mesh_config(2, 4))
  with pytest.raises(ConfigError, match="config.mesh.model: parameter "
                     "decoder/layers_0/encoder_decoder_attention/key/kernel dim 1 has size 2, "
                     "not divisible by the mesh axis size 4"):
    partitioning.params_shardings(_abstract_params(model), mesh)


def test_logical_specs_cover_every_parameter():
  model = network.Transformer(network.t5_config("tiny", 300))
  abstract = _abstract_params(model)
  specs = nn.get_partition_spec(abstract)
  shapes = nn.unbox(abstract)
  is_spec = lambda x: isinstance(x, P)  # noqa: E731
  assert jax.tree_util.tree_structure(specs, is_leaf=is_spec) == \
      jax.tree_util.tree_structure(shapes)
  # 1 embedding; encoder 2 x 9 + relpos + norm; decoder 2 x 14 + relpos + norm + head.
  assert len(jax.tree_util.tree_leaves(shapes)) == 1 + (2 * 9 + 2) + (2 * 14 + 3)
  known = set(model_config.LOGICAL_AXES)
  assert {name for name, _ in partitioning.LOGICAL_AXIS_RULES} == known

  def check(spec, shape):
    assert len(spec) == len(shape.shape) and set(spec) <= known
  jax.tree_util.tree_map(check, specs, shapes, is_leaf=is_spec)


def test_rules_come_from_the_mesh_config():
  c = _mesh_config(2, 4)
  assert partitioning.logical_axis_rules(c) == partitioning.LOGICAL_AXIS_RULES
  c.logical_axis_rules = (("vocab", None),) + partitioning.LOGICAL_AXIS_RULES
  rules = partitioning.logical_axis_rules(c)
  model = network.Transformer(network.t5_config("tiny", 300))
  shardings = partitioning.params_shardings(_abstract_params(model),
                                            partitioning.make_mesh(c), rules)
  assert shardings["token_embedder"]["embedding"].spec == P(None, None)   # vocab replicated
  assert shardings["decoder"]["layers_0"]["mlp"]["wo"]["kernel"].spec == P("model", None)


@pytest.mark.parametrize("rules,message", [
    ((), "must be a non-empty sequence of"),
    (("batch", "data"), "'batch' is not a \\(logical axis, mesh axis\\) pair"),
    ((("batch", "data", "x"),), "\\('batch', 'data', 'x'\\) is not a \\(logical axis"),
    ((("btach", "data"),), "'btach' is not a logical axis of the model"),
    ((("batch", "pipe"),), "'batch' maps to 'pipe', not one of data, model or None"),
])
def test_bad_rules_are_config_errors(rules, message):
  c = _mesh_config(-1, 1)
  c.logical_axis_rules = rules
  with pytest.raises(ConfigError, match=f"config.mesh.logical_axis_rules: {message}"):
    partitioning.make_mesh(c)


def test_cpu_compiler_options_keep_batch_reductions_out_of_ynnpack():
  # jax-ml/jax#37465: XLA:CPU's YNNPACK reductions over a leading axis are ~9x
  # slower than its own loops; the train and eval steps compile without them.
  devices = jax.devices()
  options = partitioning.compiler_options(devices)
  assert options == partitioning.CPU_COMPILER_OPTIONS
  assert partitioning.compiler_options(partitioning.make_mesh(_mesh_config(8, 1))) == options
  x = jax.ShapeDtypeStruct((64, 4, 16, 16), jax.numpy.float32)
  batch_sum = lambda x: (x * 2.0).sum(0)  # noqa: E731  the bias-gradient pattern
  hlo = jax.jit(batch_sum, compiler_options=options).lower(x).compile().as_text()
  assert "__ynn_fusion" not in hlo
  from genret_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top
  mesh = partitioning.make_mesh(_mesh_config(8, 1))
  assert step_lib.train_step_jit_kwargs(mesh, None)["compiler_options"] == options

  class Accelerator:
    platform = "gpu"
  assert partitioning.compiler_options([Accelerator()]) == {}
