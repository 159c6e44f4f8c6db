"""genret_jax.model: T5 v1.1 / Flan-T5 in Flax (T5X conventions).

  network       T5Config, t5_config(size, vocab_size), Transformer (encode / decode /
                __call__), init_cache, cache_take, pad_vocab_size
  layers        Dense / Embed / RMS LayerNorm / gated MLP / relative position biases
  attention     multi-head attention with the KV cache, mask helpers
  hf_convert    load_hf_checkpoint(directory) -> (T5Config, params, spiece path)
  builder       the `model` config block -> T5Config; load_pretrained (HF + vocab resize)
  partitioning  make_mesh, LOGICAL_AXIS_RULES, params_shardings, sharded_init,
                data_sharding, axis_rules
See docs/model.md.
"""
