"""A synthetic seqio task and small configs for the trainer tests.

The task maps a random token sequence to a target that is a function of it
(the first 3 input tokens reversed; 4 tokens with EOS, so two targets
pack into the 8-token decoder), so a model can learn it and the loss
falls. Examples are generated with numpy from a fixed seed: the same for every
process, so multi-process runs read the same data.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import seqio
import tensorflow as tf

VOCAB_SIZE = 64
TASK = "train_test_synthetic"
NUM_EXAMPLES = {"train": 96, "validation": 20, "empty": 0}
_VOCAB = seqio.PassThroughVocabulary(size=VOCAB_SIZE, eos_id=1)
_FEATURES = {"inputs": seqio.Feature(_VOCAB, add_eos=True, dtype=tf.int32),
             "targets": seqio.Feature(_VOCAB, add_eos=True, dtype=tf.int32)}


def examples(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(inputs int32 [N, 12] zero-padded, lengths int32 [N], targets int32 [N, 3])."""
  rng = np.random.default_rng({"train": 0, "validation": 1, "empty": 2}[split])
  n = NUM_EXAMPLES[split]
  lengths = rng.integers(4, 13, n).astype(np.int32)
  tokens = rng.integers(2, VOCAB_SIZE, (n, 12)).astype(np.int32)
  tokens[np.arange(12)[None, :] >= lengths[:, None]] = 0
  return tokens, lengths, tokens[:, 2::-1].copy()


def _dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
  del shuffle_files, seed  # one in-memory shard; seqio shuffles examples.
  tokens, lengths, targets = examples(split)
  ds = tf.data.Dataset.from_tensor_slices(
      {"inputs": tokens, "length": lengths, "targets": targets})
  return ds.map(lambda ex: {"inputs": ex["inputs"][:ex["length"]], "targets": ex["targets"]})


def register() -> str:
  """Registers TASK once (idempotent) and returns its name."""
  if TASK not in seqio.TaskRegistry.names():
    seqio.TaskRegistry.add(
        TASK, source=seqio.FunctionDataSource(
            _dataset_fn, splits=tuple(NUM_EXAMPLES),
            num_input_examples=dict(NUM_EXAMPLES)),
        preprocessors=[seqio.preprocessors.append_eos_after_trim],
        output_features=_FEATURES, shuffle_buffer_size=1000)
  return TASK


def config(**train_overrides):
  """The base config with the tiny model, short sequences and a short run."""
  from genret_jax.config import get_base_config  # pylint: disable=g-import-not-at-top
  c = get_base_config()
  c.model.size = "tiny"
  c.tasks.max_input_length = 16
  c.tasks.max_target_length = 8
  c.train.batch_size = 8
  c.train.num_steps = 3
  c.train.warmup_steps = 2
  c.train.log_every = 1
  c.train.checkpoint_every = 0
  c.train.async_checkpoints = False
  for key, value in train_overrides.items():
    c.train[key] = value
  return c



CACHE_DIR = os.path.join(tempfile.gettempdir(), f"genret_jax_test_jit_cache_{os.getuid()}")


def use_compilation_cache() -> dict[str, str]:
  """Turns on JAX's persistent compilation cache for this process.

  The trainer tests compile the same tiny-T5 steps many times (in-process and
  in subprocesses); the cache makes every compile after the first a lookup.
  Returns the environment variables that give a subprocess the same cache.
  """
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  return {"JAX_COMPILATION_CACHE_DIR": CACHE_DIR,
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5"}
