"""seqio mixture -> this host's rows of each global batch -> a sharded jax.Array.

The global batch of `batch_size` rows is made of `input_shards` (K) equal
blocks; block k always comes from seqio shard ShardInfo(k, K) of the mixture,
shuffled with seed + k. A process reads exactly the blocks whose rows its
devices hold, so the global batch at every step depends only on
(mixture, seed, K, batch_size, step), never on the number of processes.

K defaults (train.input_shards = 0) to gcd(batch_size, jax.device_count()):
the global device count whenever it divides the batch. It depends only on the
batch size and the global device count, so 1 process x 4 devices and
2 processes x 2 devices read identical batches; and it is a multiple of the
mesh's 'data' axis size (which divides both), so every data-parallel replica,
hence every process, holds whole blocks.

Resuming at step s re-creates the deterministic stream and skips s batches.
"""

from __future__ import annotations

import math
from typing import Iterator, Mapping

import jax
import numpy as np
import seqio
import tensorflow as tf
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

from genret_jax.errors import ConfigError, GenRetError

Batch = dict[str, np.ndarray]


def default_input_shards(batch_size: int) -> int:
  """K for train.input_shards = 0: gcd(batch_size, jax.device_count()).

  The global device count when it divides the batch (the usual data-parallel
  case); otherwise the largest count dividing both. Independent of the
  number of processes and of the mesh's data x model split.
  """
  return math.gcd(int(batch_size), jax.device_count())


def num_input_shards(configured: int, batch_size: int,
                     sharding: NamedSharding | None = None) -> int:
  """K: `train.input_shards`, or `default_input_shards(batch_size)` when 0.

  Raises ConfigError naming train.input_shards when K < 1 or does not divide
  batch_size, or (given the batch `sharding`) when the K blocks cannot be
  divided among the processes: some process's rows are not a contiguous run
  of whole blocks. Every process checks every process's rows, so all of them
  fail together with the same message.
  """
  shards = int(configured) or default_input_shards(batch_size)
  if shards < 1 or batch_size % shards:
    raise ConfigError("train.input_shards",
                      f"{shards} shards must be >= 1 and divide train.batch_size={batch_size}")
  if sharding is not None:
    for process, rows in sorted(_rows_by_process(sharding, batch_size).items()):
      _whole_blocks(rows, batch_size, shards, process, sharding)
  return shards


def _rows_by_process(sharding: NamedSharding, batch_size: int) -> dict[int, set[int]]:
  """{process index: the batch rows its devices hold} over all devices of `sharding`."""
  rows: dict[int, set[int]] = {}
  for device, index in sharding.devices_indices_map((batch_size,)).items():
    rows.setdefault(device.process_index, set()).update(range(*index[0].indices(batch_size)))
  return rows


def _whole_blocks(rows: set[int], batch_size: int, shards: int, process: int,
                  sharding: NamedSharding) -> list[int]:
  """The blocks `rows` are made of, or ConfigError when they are not whole blocks."""
  lo, hi = min(rows), max(rows) + 1
  block = batch_size // shards
  if len(rows) == hi - lo and not lo % block and not hi % block:
    return list(range(lo // block, hi // block))
  held = f"rows [{lo}, {hi})" if len(rows) == hi - lo else (
      f"{len(rows)} rows between {lo} and {hi - 1}, not a contiguous run")
  row_blocks = len({index[0].indices(batch_size)
                    for index in sharding.devices_indices_map((batch_size,)).values()})
  processes = len({d.process_index for d in sharding.device_set})
  raise ConfigError("train.input_shards",
                    f"{shards} shards of {block} rows cannot be divided among the {processes} "
                    f"processes: process {process} holds {held} of the {batch_size}-row batch; "
                    f"use a multiple of the {row_blocks} row blocks of the mesh's 'data' axis "
                    f"that divides train.batch_size (0 = gcd(batch_size, device count) = "
                    f"{default_input_shards(batch_size)})")


def local_shards(sharding: NamedSharding, batch_size: int, shards: int) -> list[int]:
  """The input shards whose rows live on this process's devices, in row order.

  Raises ConfigError when this process's rows are not a contiguous run of
  whole shard blocks (e.g. a mesh that interleaves hosts along 'data').
  """
  rows = set()
  for index in sharding.addressable_devices_indices_map((batch_size,)).values():
    rows.update(range(*index[0].indices(batch_size)))
  return _whole_blocks(rows, batch_size, shards, jax.process_index(), sharding)


def _provider(name: str) -> seqio.DatasetProviderBase:
  try:
    return seqio.get_mixture_or_task(name)
  except ValueError as e:
    raise GenRetError(f"seqio task or mixture {name!r} is not registered: {e}") from e


def _deterministic(ds: tf.data.Dataset) -> tf.data.Dataset:
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options)


def shard_dataset(name: str, feature_lengths: Mapping[str, int], *, split: str, shard: int,
                  shards: int, rows: int, seed: int | None, pack: bool, repeat: bool,
                  drop_remainder: bool) -> tf.data.Dataset:
  """Batches of `rows` converted examples from seqio shard `shard` of `shards`."""
  provider = _provider(name)
  ds = provider.get_dataset(
      sequence_length=dict(feature_lengths), split=split, shuffle=seed is not None,
      seed=None if seed is None else seed + shard,
      shard_info=seqio.ShardInfo(index=shard, num_shards=shards),
      num_epochs=None if repeat else 1)
  converter = seqio.EncDecFeatureConverter(pack=pack)
  ds = converter(ds, dict(feature_lengths))
  ds = ds.batch(rows, drop_remainder=drop_remainder)
  return _deterministic(ds)


def train_batches(name: str, feature_lengths: Mapping[str, int], *, split: str, seed: int,
                  batch_size: int, shards: int, sharding: NamedSharding, pack: bool,
                  start_step: int) -> Iterator[Batch]:
  """This host's rows of global train batches start_step, start_step + 1, ...

  Yields dicts of int32 numpy arrays [rows_on_this_host, L], forever.
  """
  block = batch_size // shards
  datasets = [shard_dataset(name, feature_lengths, split=split, shard=k, shards=shards,
                            rows=block, seed=seed, pack=pack, repeat=True, drop_remainder=True)
              for k in local_shards(sharding, batch_size, shards)]
  ds = tf.data.Dataset.zip(tuple(datasets)).map(
      lambda *parts: {key: tf.concat([p[key] for p in parts], axis=0) for key in parts[0]})
  ds = ds.skip(start_step).prefetch(tf.data.AUTOTUNE)
  step = start_step
  for batch in ds.as_numpy_iterator():
    yield batch
    step += 1
  raise GenRetError(f"{name!r} split {split!r}: the input ended at step {step}: a shard of "
                    f"{shards} yields no full batch of {block} rows")


def eval_batches(name: str, feature_lengths: Mapping[str, int], *, split: str,
                 batch_size: int, shards: int, sharding: NamedSharding, max_batches: int
                 ) -> list[Batch]:
  """This host's rows of every eval batch (unpacked, unshuffled, one epoch).

  The last batches are padded with all-zero rows (zero loss weight); all
  processes return the same number of batches (the maximum over processes).
  """
  block = batch_size // shards
  per_shard = []
  for k in local_shards(sharding, batch_size, shards):
    ds = shard_dataset(name, feature_lengths, split=split, shard=k, shards=shards, rows=block,
                       seed=None, pack=False, repeat=False, drop_remainder=False)
    if max_batches:
      ds = ds.take(max_batches)
    per_shard.append(list(ds.as_numpy_iterator()))
  count = max(len(b) for b in per_shard)
  if jax.process_count() > 1:
    count = int(np.max(multihost_utils.process_allgather(np.int32(count))))
  if count == 0:
    raise GenRetError(f"{name!r} split {split!r} has no examples to evaluate")
  template = next(b[0] for b in per_shard if b) if any(per_shard) else None
  batches = []
  for i in range(count):
    parts = []
    for shard_batches in per_shard:
      part = shard_batches[i] if i < len(shard_batches) else None
      parts.append(_pad_rows(part, template, block, feature_lengths))
    batches.append({key: np.concatenate([p[key] for p in parts]) for key in parts[0]})
  return batches


def _pad_rows(part: Batch | None, template: Batch | None, rows: int,
              feature_lengths: Mapping[str, int]) -> Batch:
  """`part` padded with zero rows to `rows` rows (all zeros when None)."""
  if part is None:
    if template is None:
      enc, dec = feature_lengths["inputs"], feature_lengths["targets"]
      keys = {"encoder_input_tokens": enc, "decoder_input_tokens": dec,
              "decoder_target_tokens": dec, "decoder_loss_weights": dec}
      return {k: np.zeros((rows, n), np.int32) for k, n in keys.items()}
    return {k: np.zeros((rows,) + v.shape[1:], v.dtype) for k, v in template.items()}
  return {k: np.pad(v, [(0, rows - v.shape[0])] + [(0, 0)] * (v.ndim - 1))
          for k, v in part.items()}


def to_global(batch: Batch, sharding: NamedSharding, batch_size: int) -> dict[str, jax.Array]:
  """This host's rows -> global jax.Arrays [batch_size, L] sharded by `sharding`."""
  return {k: jax.make_array_from_process_local_data(sharding, v, (batch_size,) + v.shape[1:])
          for k, v in batch.items()}
