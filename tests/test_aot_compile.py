"""Ahead-of-time compile of the train step and constrained decoding on a mesh
larger than this machine: 32 fake CPU devices as data 8 x model 4.

Nothing is materialised: the TrainState is the abstract one from
`state_lib.state_shardings` (ShapeDtypeStructs carrying their shardings), the
batch is ShapeDtypeStructs sharded on 'data', and both programs go through
`jax.jit(...).lower(...).compile()` inside `partitioning.axis_rules(mesh)`.
This catches sharding errors (indivisible dims, conflicting constraints,
bad in/out shardings) without hardware.

The model is T5-base width (emb 768, 12 heads x 64, mlp 2048, the T5 vocabulary
plus 3 x 256 item tokens) at 2 + 2 layers: every layer has the same shapes and
shardings, so two layers (the second sees the first's sharded output) check the
same partitioning as T5-base's 12 + 12 at a fraction of the compile time (~95 s
for 12 + 12 on the loaded 2-core machine, most of it compiling identical layers).

The compile runs in a child process (this file run as `python -m
tests.test_aot_compile`) because the device count is fixed when jax starts and
the test session has 8 devices.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

DATA, MODEL = 8, 4
NUM_LAYERS = 2                     # per stack; T5-base has 12 of the same layer
TEXT_VOCAB = 32100                 # T5's sentencepiece vocabulary + sentinels
ID_LEVELS, ID_CODES = 3, 256       # item identifiers: 3 tokens of 256 codes
INPUT_LEN, TARGET_LEN = 128, 8
TRAIN_BATCH = 64                   # global, 8 rows per 'data' shard
DECODE_BATCH, BEAM, RESULTS = 16, 8, 8


def _spec(sharding) -> list:
  """A sharding's PartitionSpec as JSON (trailing replicated dims dropped)."""
  spec = [None if p is None else (p if isinstance(p, str) else list(p))
          for p in sharding.spec]
  while spec and spec[-1] is None:
    spec.pop()
  return spec


def _child() -> dict:
  """Lowers and compiles both programs; returns their shardings as JSON."""
  import time

  import jax
  import jax.numpy as jnp
  import numpy as np

  from genret_jax.decoding import model_decode, trie as trie_lib
  from genret_jax.model import network, partitioning
  from genret_jax.train import config as train_config, optim, state as state_lib
  from genret_jax.train import step as step_lib

  out = {"num_devices": jax.device_count()}
  mesh = partitioning.make_mesh({"data": DATA, "model": MODEL})
  rules = partitioning.LOGICAL_AXIS_RULES
  cfg = network.t5_config("base", TEXT_VOCAB + ID_LEVELS * ID_CODES,
                          num_encoder_layers=NUM_LAYERS, num_decoder_layers=NUM_LAYERS)
  out["vocab_size"] = cfg.vocab_size
  model = network.Transformer(cfg)
  train_cfg = train_config.default_config()
  tx = optim.make_optimizer(train_cfg)
  abstract, shardings = state_lib.state_shardings(model, tx, mesh, rules, INPUT_LEN, TARGET_LEN)

  # Train step: the JittedStep training uses (step_lib.jit_train_step: its jit
  # settings and axis rules), lowered on abstract inputs.
  data = step_lib.batch_sharding(mesh)
  batch = {name: jax.ShapeDtypeStruct((TRAIN_BATCH, length), jnp.int32, sharding=data)
           for name, length in (("encoder_input_tokens", INPUT_LEN),
                                ("decoder_input_tokens", TARGET_LEN),
                                ("decoder_target_tokens", TARGET_LEN),
                                ("decoder_loss_weights", TARGET_LEN))}
  step_fn = step_lib.make_train_step(model, tx, optim.learning_rate_schedule(train_cfg),
                                     train_cfg)
  train_step = step_lib.jit_train_step(step_fn, mesh, rules, shardings)
  out["train_donate_argnums"] = list(train_step.jit_kwargs["donate_argnums"])
  t0 = time.perf_counter()
  compiled = train_step.lower(abstract, batch).compile()
  out["train_compile_s"] = time.perf_counter() - t0
  (state_in, batch_in), _ = compiled.input_shardings
  state_out, metrics_out = compiled.output_shardings
  pick = {
      "embedding": lambda p: p["token_embedder"]["embedding"],
      "wi_0": lambda p: p["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"],
      "wo": lambda p: p["encoder"]["layers_0"]["mlp"]["wo"]["kernel"],
  }
  out["train_in"] = {k: _spec(f(state_in.params)) for k, f in pick.items()}
  out["train_out"] = {k: _spec(f(state_out.params)) for k, f in pick.items()}
  out["train_batch_in"] = {k: _spec(s) for k, s in batch_in.items()}
  out["train_metrics_out"] = sorted({str(_spec(s)) for s in metrics_out.values()})
  # AdamW moments follow their parameter.
  adam = [s for s in jax.tree_util.tree_leaves(
      state_out.opt_state, is_leaf=lambda x: hasattr(x, "mu"))
      if hasattr(s, "mu")][0]
  out["train_mu_out"] = {k: _spec(f(adam.mu)) for k, f in pick.items()}
  param_bytes = sum(4 * int(np.prod(p.shape))
                    for p in jax.tree_util.tree_leaves(abstract.params))
  out["param_bytes"] = param_bytes
  out["train_argument_bytes_per_device"] = int(
      compiled.memory_analysis().argument_size_in_bytes)

  # Constrained decoding: search_jit on abstract params and a data-sharded batch.
  rng = np.random.default_rng(0)
  codes = rng.integers(0, ID_CODES, size=(5000, ID_LEVELS))
  offsets = [TEXT_VOCAB + l * ID_CODES for l in range(ID_LEVELS)]
  trie = trie_lib.build_trie(codes, offsets, [ID_CODES] * ID_LEVELS)
  queries = jax.ShapeDtypeStruct((DECODE_BATCH, INPUT_LEN), jnp.int32, sharding=data)
  t0 = time.perf_counter()
  with partitioning.axis_rules(mesh, rules):
    decode = model_decode.search_jit.lower(
        model, abstract.params, queries, trie, beam_size=BEAM, num_results=RESULTS,
        mode="constrained").compile()
  out["decode_compile_s"] = time.perf_counter() - t0
  (params_in, queries_in, _), _ = decode.input_shardings  # module is static
  out["decode_in"] = {"queries": _spec(queries_in),
                      "embedding": _spec(pick["embedding"](params_in))}
  items = decode.output_shardings.items
  out["decode_items_out"] = _spec(items)
  out["decode_items_shape"] = list(decode.out_info.items.shape)

  # The same check refuses a mesh the model cannot be split over: 12 heads on
  # a model axis of 8, before anything is compiled.
  from genret_jax.errors import ConfigError
  bad_mesh = partitioning.make_mesh({"data": DATA * MODEL // 8, "model": 8})
  try:
    state_lib.state_shardings(model, tx, bad_mesh, rules, INPUT_LEN, TARGET_LEN)
    out["bad_mesh_error"] = None
  except ConfigError as e:
    out["bad_mesh_error"] = str(e)
  return out


def _run_child() -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={DATA * MODEL}"
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.run([sys.executable, "-m", "tests.test_aot_compile"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def compiled() -> dict:
  return _run_child()


@pytest.mark.slow
def test_aot_train_step_shardings(compiled):
  assert compiled["num_devices"] == DATA * MODEL
  assert compiled["vocab_size"] % MODEL == 0
  # LOGICAL_AXIS_RULES: vocab -> model, mlp -> model, embed -> replicated.
  expected = {"embedding": ["model"], "wi_0": [None, "model"], "wo": ["model"]}
  assert compiled["train_in"] == expected
  assert compiled["train_out"] == expected
  assert compiled["train_mu_out"] == expected
  assert compiled["train_batch_in"] == {
      k: ["data"] for k in ("encoder_input_tokens", "decoder_input_tokens",
                            "decoder_target_tokens", "decoder_loss_weights")}
  assert compiled["train_metrics_out"] == ["[]"]
  assert compiled["train_donate_argnums"] == [0]       # the state is donated, as in training
  # Params + 2 AdamW moments, most of it split 4 ways over 'model': each device
  # holds well under the replicated 3x (norm scales and relpos are small).
  per_device = compiled["train_argument_bytes_per_device"]
  assert per_device < 3 * compiled["param_bytes"] / MODEL * 1.1
  assert per_device > 3 * compiled["param_bytes"] / MODEL * 0.9


@pytest.mark.slow
def test_aot_constrained_decode_shardings(compiled):
  assert compiled["decode_in"] == {"queries": ["data"], "embedding": ["model"]}
  assert compiled["decode_items_shape"] == [DECODE_BATCH, RESULTS]
  assert compiled["decode_items_out"] == ["data"]


@pytest.mark.slow
def test_aot_indivisible_mesh_is_a_config_error(compiled):
  error = compiled["bad_mesh_error"]
  assert error is not None and error.startswith("config.mesh.model:")
  assert "not divisible by the mesh axis size 8" in error


if __name__ == "__main__":
  print(json.dumps(_child()))
