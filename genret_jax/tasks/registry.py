"""seqio Tasks and Mixtures for one prepared dataset and one identifier table pair.

Names: `genret_{data}_{scheme}_{h}_{kind}` for tasks and `..._{mixture}` for
mixtures, where `data` is the prepared dataset's content hash and `h` hashes
the ID tables and the tasks config; registering the same again replaces them.

Splits: `train` (each TRAIN event is a target, with its history), `validation`
and `test` (the VALID / TEST events); a history is the user's last
`data.max_history` events with a strictly earlier timestamp. Event tasks also emit `target_item`, `user`, `event`, `candidates`
(int32[100] for evaluation: target + 99 negatives, [] in train) and
`history_length`; mixtures and the feature converters drop them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os

import ml_collections
import numpy as np
import seqio
import tensorflow as tf

from genret_jax.data import prepared as prepared_lib
from genret_jax.data.schema import REC, SEARCH
from genret_jax.errors import ConfigError
from genret_jax.ids.types import ItemIdentifiers
from genret_jax.tasks import config as tasks_config
from genret_jax.tasks import formatting
from genret_jax.tasks.kinds import KINDS, STYLES, task_tables
from genret_jax.tasks.vocab import GenRetVocabulary

# mixture -> its task kinds (of kinds.KINDS; a `both_tables` kind brings its `_rec`
# task along when the search and rec tables differ), and the kinds its models are
# evaluated on, per behaviour.
MIXTURE_KINDS = {
    "rec_only": ("rec",), "search_only": ("search",), "joint": ("rec", "search"),
    "gensar": ("gensar_rec", "gensar_search", "next_query", "text2id", "id2text"),
}
EVAL_KINDS = {"rec_only": {"rec": "rec"}, "search_only": {"search": "search"},
              "joint": {"rec": "rec", "search": "search"},
              "gensar": {"rec": "gensar_rec", "search": "gensar_search"}}


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the tasks block; raises ConfigError naming the key, before any work."""
  t = config.tasks
  if t.mixture not in tasks_config.MIXTURES:
    raise ConfigError("tasks.mixture", f"{t.mixture!r} is not one of {tasks_config.MIXTURES}")
  # Code errors, not config ones: the mixture tables name mixtures and kinds that exist.
  if not set(tasks_config.MIXTURES) == set(MIXTURE_KINDS) == set(EVAL_KINDS):
    raise ValueError("tasks.config.MIXTURES, registry.MIXTURE_KINDS and EVAL_KINDS must "
                     "name the same mixtures")
  for mixture, members in MIXTURE_KINDS.items():
    unknown = [k for k in (*members, *EVAL_KINDS[mixture].values()) if k not in KINDS]
    if unknown:
      raise ValueError(f"mixture {mixture!r} names {unknown}, not kinds of tasks.kinds.KINDS")
  if t.cap_behaviour not in ("", "rec", "search"):
    raise ConfigError("tasks.cap_behaviour", f"{t.cap_behaviour!r} is not '', rec or search")
  if not isinstance(t.behaviour_tokens, bool):
    raise ConfigError("tasks.behaviour_tokens", f"must be True or False, got "
                      f"{t.behaviour_tokens!r}")
  if int(t.cap_per_item) < 0:
    raise ConfigError("tasks.cap_per_item", f"must be >= 0, got {t.cap_per_item}")
  for key in ("max_input_length", "max_target_length"):
    if int(t[key]) < 2:
      raise ConfigError(f"tasks.{key}", f"must be >= 2, got {t[key]}")
  if t.prompt_style not in STYLES:
    raise ConfigError("tasks.prompt_style", f"{t.prompt_style!r} is not one of "
                      f"{STYLES}")
  templates = tasks_config.prompt_templates(t)
  for kind, spec in KINDS.items():
    template = templates[kind]
    try:
      fields = formatting.template_fields(template)
    except ValueError as e:
      raise ConfigError(f"tasks.prompts.{kind}", f"bad template: {e}") from None
    missing = spec.required_fields - set(fields)
    unknown = set(fields) - spec.allowed_fields
    if missing or unknown or fields.count("history") > 1:
      raise ConfigError(f"tasks.prompts.{kind}",
                        f"needs {sorted(spec.required_fields)}, may use "
                        f"{sorted(spec.allowed_fields)} (history once); got {fields}")
    if not np.isfinite(float(t.rates[kind])):
      raise ConfigError(f"tasks.rates.{kind}", "must be finite: > 0, 0 to leave the task "
                        "out, or < 0 for 'number of examples'")


def eval_prefix(config: ml_collections.ConfigDict) -> dict[str, str]:
  """{'rec'|'search': the behaviour token decoding forces before the ID, or ''} of the
  eval tasks of `tasks.mixture` ('' everywhere with `tasks.behaviour_tokens` False)."""
  t = config.tasks
  return {b: KINDS[k].eval_prefix if t.behaviour_tokens else ""
          for b, k in EVAL_KINDS[t.mixture].items()}


def vocabulary(prepared_path: str, ids: ItemIdentifiers) -> GenRetVocabulary:
  """The vocabulary of a prepared dataset with these identifiers."""
  return GenRetVocabulary(os.path.join(prepared_path, prepared_lib.SP_MODEL), ids.extra_tokens())


def _name_prefix(manifest: dict, config, ids: ItemIdentifiers) -> str:
  h = hashlib.sha256()
  for t in (ids.search, ids.rec):
    h.update(json.dumps([t.name, t.level_prefixes, t.level_sizes]).encode())
    h.update(np.ascontiguousarray(t.codes, np.int32).tobytes())
  h.update(json.dumps(config.tasks.to_dict(), sort_keys=True).encode())
  return f"genret_{manifest['content_hash'][:10]}_{ids.scheme}_{h.hexdigest()[:8]}"


# A task shard of at most this many examples is kept in memory, formatted, after its
# first pass and shuffled whole every epoch; a larger one is re-read and formatted
# every epoch (files in a new order) through a shuffle buffer of this many examples.
IN_MEMORY_EXAMPLES = 262_144


class FilteredSource(seqio.TFExampleDataSource):
  """TFRecord examples, optionally filtered; shards always partition the data.

  A shard is taken by file when there are at least as many files as shards,
  else as every K-th example of the unshuffled stream (so seeds that differ per
  shard never make shards overlap). With `shuffle` only the file order is
  shuffled: examples are shuffled by `EpochShuffledTask`, after formatting.
  `num_input_examples` is the filtered count.
  """

  def __init__(self, split_to_filepattern: dict[str, str], features: dict,
               num_input_examples: dict[str, int], keep=None):
    super().__init__(split_to_filepattern, features, num_input_examples=num_input_examples)
    self._keep = keep

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  @property
  def performs_internal_shuffling(self) -> bool:
    return True         # the task shuffles (EpochShuffledTask), not seqio's buffer

  def get_dataset(self, split: str = prepared_lib.TRAIN, shuffle: bool = True,
                  seed: int | None = None, shard_info: seqio.ShardInfo | None = None,
                  **kwargs) -> tf.data.Dataset:
    shards = shard_info.num_shards if shard_info else 1
    by_file = shard_info is not None and len(self.list_shards(split)) >= shards
    ds = super().get_dataset(split=split, shuffle=shuffle and (by_file or shards == 1),
                             seed=seed, shard_info=shard_info if by_file else None, **kwargs)
    if shards > 1 and not by_file:
      ds = ds.shard(shards, shard_info.index)
    return ds if self._keep is None else ds.filter(self._keep)


class EpochShuffledTask(seqio.Task):
  """A Task whose shuffled stream is every epoch the whole shard in a new order.

  seqio's own Task shuffle is a buffer (1,000 by default) applied after the
  repeat; over records written in (user, time) order it shows a run a slice of
  the users at a time. With `shuffle`, this task formats one epoch of its shard
  (seqio's preprocessors), keeps it in memory when it holds at most
  IN_MEMORY_EXAMPLES (so later epochs neither read nor format again), shuffles
  it with a buffer holding the whole shard (up to IN_MEMORY_EXAMPLES) and
  `reshuffle_each_iteration`, then repeats: a pure function of the seed, so exact
  resume replays it. Registered with `shuffle_buffer_size=None` over a
  `FilteredSource`. Unshuffled reads are seqio's.
  """

  def get_dataset(self, sequence_length=None, split: str = prepared_lib.TRAIN,
                  use_cached: bool = False, shuffle: bool = True,
                  shuffle_buffer_size: int | None = None, seed: int | None = None,
                  shard_info: seqio.ShardInfo | None = None, num_epochs: int | None = 1,
                  trim_output_features: bool = True, try_in_mem_cache: bool = True
                  ) -> tf.data.Dataset:
    if not shuffle:
      return super().get_dataset(
          sequence_length, split=split, use_cached=use_cached, shuffle=False, seed=seed,
          shard_info=shard_info, num_epochs=num_epochs,
          trim_output_features=trim_output_features, try_in_mem_cache=try_in_mem_cache)
    ds = super().get_dataset(sequence_length, split=split, use_cached=use_cached, shuffle=True,
                             seed=seed, shard_info=shard_info, num_epochs=1,
                             trim_output_features=trim_output_features, try_in_mem_cache=False)
    shards = shard_info.num_shards if shard_info else 1
    per_shard = -(-int(self.source.num_input_examples(split) or 0) // shards)
    if 0 < per_shard <= IN_MEMORY_EXAMPLES:
      ds = ds.cache()
    ds = ds.shuffle(min(max(per_shard, 1), IN_MEMORY_EXAMPLES), seed=seed,
                    reshuffle_each_iteration=True)
    return ds.repeat(num_epochs).prefetch(tf.data.AUTOTUNE)


def event_source(path: str, behaviour: int, cap: int, num_input_examples: dict[str, int]
                 ) -> FilteredSource:
  """The events of one behaviour, TRAIN events also capped per item.

  VALID / TEST events have rank -1, so the cap never touches evaluation. A
  shuffled task under IN_MEMORY_EXAMPLES (per shard) reads and formats its events
  once (EpochShuffledTask); later epochs skip reading and parsing every event of
  the other behaviour.
  """
  @tf.autograph.experimental.do_not_convert
  def keep(ex):
    ok = tf.equal(ex["behaviour"], behaviour)
    if cap > 0:
      ok = ok & (ex["item_rank"] < cap)
    return ok
  return FilteredSource(prepared_lib.split_patterns(path), prepared_lib.EVENT_FEATURES,
                        num_input_examples, keep)


def _example_counts(path: str, manifest: dict, config, tables: dict[str, tuple]
                    ) -> dict[str, int]:
  """{task key of `tables` (kinds.task_tables): number of training examples}, event
  tasks with the per-item cap."""
  counts = prepared_lib.item_train_counts(path)
  cap = int(config.tasks.cap_per_item)
  capped = {}
  for b, name in ((REC, "rec"), (SEARCH, "search")):
    c = counts[b]
    if cap > 0 and config.tasks.cap_behaviour == name:
      c = np.minimum(c, cap)
    capped[b] = int(c.sum())
  num_items = int(manifest["counts"]["items"])
  return {key: capped[KINDS[kind].behaviour] if KINDS[kind].source == "events" else num_items
          for key, (kind, _) in tables.items()}


def mixture_rates(config: ml_collections.ConfigDict, mixture: str, tables: dict[str, tuple],
                  counts: dict[str, int]) -> dict[str, float]:
  """{task key: mixing rate} of `mixture`'s tasks, in MIXTURE_KINDS order.

  A kind's rate is `tasks.rates.<kind>` (its `_rec` task shares it), its number of
  training examples when < 0; a task without training examples or with rate 0 is
  left out (GenSAR's task ablations).
  """
  rates = {}
  for member in MIXTURE_KINDS[mixture]:
    rate = float(config.tasks.rates[member])
    for key, (kind, _) in tables.items():
      if kind == member and counts[key] > 0 and rate != 0:
        rates[key] = float(counts[key]) if rate < 0 else rate
  return rates


def register(config: ml_collections.ConfigDict, workdir: str, ids: ItemIdentifiers) -> dict:
  """Registers the Tasks and Mixtures of `{workdir}/prepared` with `ids`.

  One task per kind of kinds.KINDS (and `<kind>_rec` for a `both_tables` kind when
  the search and rec tables differ); one mixture per MIXTURE_KINDS entry.

  Returns:
    {"mixture": train mixture name, "mixtures": {mixture: name},
     "tasks": {task key: name}, "eval_tasks": {"rec"|"search": task name},
     "eval_prefix": {"rec"|"search": behaviour token forced first, or ''} (eval_prefix),
     "vocabulary": the GenRetVocabulary, "example_counts": {task key: n},
     "rates": {task key: rate} of the train mixture (its tasks)}.
  """
  validate(config)
  path = os.path.join(workdir, "prepared")
  manifest = prepared_lib.read_manifest(path)
  if manifest is None:
    raise ConfigError("workdir", f"{path} holds no prepared dataset; run --mode=prepare")
  num_items = int(manifest["counts"]["items"])
  for role, table in (("search", ids.search), ("rec", ids.rec)):
    if table.codes.shape[0] != num_items:
      raise ConfigError("ids.scheme", f"{role} table has {table.codes.shape[0]} items, the "
                        f"prepared dataset {num_items}")
  vocab = vocabulary(path, ids)
  t = config.tasks
  fmt = formatting.Formatter(vocab, ids.search, ids.rec, tasks_config.prompt_templates(t),
                             t.history_separator, int(t.max_input_length),
                             prepared_lib.read_queries(path),
                             behaviour_tokens=bool(t.behaviour_tokens))
  output_features = {"inputs": seqio.Feature(vocab, add_eos=True, required=True),
                     "targets": seqio.Feature(vocab, add_eos=True)}
  prefix = _name_prefix(manifest, config, ids)
  tables = task_tables(two_tables=ids.search is not ids.rec)
  names = {key: f"{prefix}_{key}" for key in tables}
  mixture_names = {m: f"{prefix}_{m}" for m in MIXTURE_KINDS}
  for name in mixture_names.values():
    seqio.MixtureRegistry.remove(name)
  for name in names.values():
    seqio.TaskRegistry.remove(name)

  items_source = FilteredSource({"train": prepared_lib.items_pattern(path)},
                                prepared_lib.ITEM_FEATURES, {"train": num_items})
  cap = int(t.cap_per_item)
  counts = _example_counts(path, manifest, config, tables)
  for key, (kind, role) in tables.items():
    spec = KINDS[kind]
    if spec.source == "events":
      b = "rec" if spec.behaviour == REC else "search"
      sizes = {split: int(manifest["counts"]["per_split"][split][b])
               for split in prepared_lib.SPLIT_NAMES}
      sizes[prepared_lib.TRAIN] = counts[key]
      source = event_source(path, spec.behaviour, cap if t.cap_behaviour == b else 0, sizes)
      make_fn = fmt.event_fn
    else:
      source, make_fn = items_source, functools.partial(fmt.item_fn, role=role)
    seqio.TaskRegistry.add_provider(names[key], EpochShuffledTask(
        names[key], source=source, output_features=output_features, shuffle_buffer_size=None,
        preprocessors=[_mapper(make_fn, kind), seqio.preprocessors.append_eos_after_trim]))

  rates = {m: mixture_rates(config, m, tables, counts) for m in MIXTURE_KINDS}
  for mixture, members in MIXTURE_KINDS.items():
    if rates[mixture]:
      seqio.MixtureRegistry.add(mixture_names[mixture],
                                [(names[key], r) for key, r in rates[mixture].items()])
    elif mixture == t.mixture:
      raise ConfigError("tasks.mixture", f"{mixture}: the prepared dataset has no training "
                        f"examples for any of its tasks ({', '.join(members)}), or every "
                        "task's rate is 0; leave this model out of --config.models (a "
                        "rec-only dataset: configs/rec.py; search-only: configs/search.py)")
  return {
      "mixture": mixture_names[t.mixture], "mixtures": mixture_names, "tasks": names,
      "eval_tasks": {b: names[k] for b, k in EVAL_KINDS[t.mixture].items()},
      "eval_prefix": eval_prefix(config),
      "vocabulary": vocab, "example_counts": counts, "rates": rates[t.mixture],
  }


def _mapper(make_fn, kind: str):
  """A seqio preprocessor mapping `make_fn(kind, sequence_length)` over the dataset."""
  def prep(dataset, sequence_length=None):
    return dataset.map(make_fn(kind, sequence_length=sequence_length),
                       num_parallel_calls=tf.data.AUTOTUNE)
  return prep


def feature_converter(config: ml_collections.ConfigDict) -> seqio.EncDecFeatureConverter:
  """The encoder-decoder feature converter, packing examples when `config.tasks.pack`."""
  return seqio.EncDecFeatureConverter(pack=bool(config.tasks.pack))
