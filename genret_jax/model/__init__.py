"""genret_jax.model: T5 v1.1 / Flan-T5 in Flax (T5X conventions). See docs/model.md.

The public API; the modules are network (the Transformer), layers, attention (with the
KV cache), hf_convert (Hugging Face checkpoints), builder (the `model` block) and
partitioning (mesh, logical axis rules, shardings).

Network:
  t5_config(size, vocab_size, **overrides) -> T5Config     size None: every dimension
                                                           (DIM_FIELDS) in overrides
  Transformer(config): __call__ (teacher forcing), encode, decode (one cached step)
  init_cache(module, batch_size, max_decode_length, encoder_length, *, params=None,
             encoded=None, encoder_input_tokens=None, beams=1)
  pad_vocab_size(vocab_size), SIZES
Checkpoints and config:
  load_hf_checkpoint(directory) -> (T5Config, params, spiece path | None)
  load_pretrained(model_cfg, vocab_size, seed=0)   HF checkpoint resized to the vocabulary
  t5_config_from_block(model_cfg, vocab_size)      the `model` config block -> T5Config
Partitioning:
  make_mesh(mesh_cfg, devices=None), logical_axis_rules(mesh_cfg), LOGICAL_AXIS_RULES,
  params_shardings(abstract_params, mesh, rules), data_sharding(mesh), replicated(mesh),
  axis_rules(mesh, rules), compiler_options(devices | mesh)
"""

from genret_jax.model.builder import load_pretrained, t5_config_from_block
from genret_jax.model.hf_convert import load_hf_checkpoint
from genret_jax.model.network import (DIM_FIELDS, SIZES, T5Config, Transformer, init_cache,
                                      pad_vocab_size, t5_config)
from genret_jax.model.partitioning import (LOGICAL_AXIS_RULES, axis_rules, compiler_options,
                                           data_sharding, logical_axis_rules, make_mesh,
                                           params_shardings, replicated)

__all__ = [
    "T5Config", "t5_config", "Transformer", "init_cache", "pad_vocab_size", "SIZES",
    "DIM_FIELDS", "load_hf_checkpoint", "load_pretrained", "t5_config_from_block",
    "make_mesh", "logical_axis_rules", "LOGICAL_AXIS_RULES", "params_shardings",
    "data_sharding", "replicated", "axis_rules", "compiler_options",
]
