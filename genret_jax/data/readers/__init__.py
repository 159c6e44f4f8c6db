"""Raw data -> canonical (Catalog, Events).

`load_raw(data_config)` dispatches on `data_config.source`:

  simulated  genret_jax.data.simulator.simulate (no files)
  movielens  read_movielens(path, ...)    ml-latest-small / ml-25m / ml-100k
  amazon     read_amazon(path, ...)       sequential layout or raw McAuley JSON
  generic    read_generic(items, events)  canonical JSONL / CSV

Each reader validates its whole input before building anything and raises a
one-line DataError naming file:line:field; config problems raise ConfigError
naming the key. docs/data.md documents every format and knob.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from genret_jax.data import simulator
from genret_jax.data.readers.amazon import read_amazon, read_amazon_raw, read_amazon_sequential
from genret_jax.data.readers.common import (category_query, check_catalog_events,
                                            normalize_query)
from genret_jax.data.readers.generic import read_generic, read_generic_folder
from genret_jax.data.readers.movielens import read_movielens
from genret_jax.data.schema import Catalog, Events
from genret_jax.errors import ConfigError

SOURCES = ("simulated", "movielens", "amazon", "generic")

__all__ = [
    "SOURCES", "load_raw", "validate", "read_movielens", "read_amazon", "read_amazon_raw",
    "read_amazon_sequential", "read_generic", "read_generic_folder", "category_query",
    "normalize_query",
]


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
  return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _check(cond: bool, key: str, message: str) -> None:
  if not cond:
    raise ConfigError(key, message)


def validate(data_config: ml_collections.ConfigDict) -> None:
  """Checks the `data` block; ConfigError naming the first bad key."""
  c = data_config
  _check(c.source in SOURCES, "data.source",
         f"must be one of {', '.join(SOURCES)}, got {c.source!r}")
  _check(c.source == "simulated" or bool(str(c.path).strip()), "data.path",
         f"must name the raw data folder for source={c.source!r}")
  _check(_is_int(c.max_history) and c.max_history >= 1, "data.max_history",
         f"must be an integer >= 1, got {c.max_history!r}")
  _check(_is_int(c.seed), "data.seed", f"must be an integer, got {c.seed!r}")
  m = c.movielens
  _check(_is_num(m.min_rating), "data.movielens.min_rating",
         f"must be a number, got {m.min_rating!r}")
  _check(_is_int(m.min_tag_users) and m.min_tag_users >= 1, "data.movielens.min_tag_users",
         f"must be an integer >= 1, got {m.min_tag_users!r}")
  _check(isinstance(m.drop_tags, (tuple, list)) and all(isinstance(t, str) for t in m.drop_tags),
         "data.movielens.drop_tags", f"must be a list of strings, got {m.drop_tags!r}")
  _check(_is_int(m.max_item_tags) and m.max_item_tags >= 0, "data.movielens.max_item_tags",
         f"must be an integer >= 0, got {m.max_item_tags!r}")
  a = c.amazon
  for k in ("sequence_file", "attributes_file", "reviews_file", "meta_file"):
    _check(isinstance(a[k], str), f"data.amazon.{k}", f"must be a string, got {a[k]!r}")
  _check(bool(a.attributes_file), "data.amazon.attributes_file", "must not be empty")
  for k in ("drop_root", "allow_missing_metadata"):
    _check(isinstance(a[k], bool), f"data.amazon.{k}", f"must be true or false, got {a[k]!r}")
  _check(_is_int(a.max_description_chars) and a.max_description_chars >= 0,
         "data.amazon.max_description_chars",
         f"must be an integer >= 0, got {a.max_description_chars!r}")
  for k in ("items_file", "events_file"):
    _check(isinstance(c.generic[k], str), f"data.generic.{k}",
           f"must be a string, got {c.generic[k]!r}")
  simulator.validate(c.simulator)


def load_raw(data_config: ml_collections.ConfigDict) -> tuple[Catalog, Events]:
  """The dataset named by the `data` config block, as (Catalog, Events); every reader's
  output is checked against the schema's invariants (check_catalog_events)."""
  validate(data_config)
  catalog, events = _read(data_config)
  check_catalog_events(catalog, events)
  return catalog, events


def _read(c: ml_collections.ConfigDict) -> tuple[Catalog, Events]:
  if c.source == "simulated":
    return simulator.simulate(c)
  if c.source == "movielens":
    m = c.movielens
    return read_movielens(c.path, min_rating=float(m.min_rating),
                          min_tag_users=int(m.min_tag_users), drop_tags=tuple(m.drop_tags),
                          max_item_tags=int(m.max_item_tags))
  if c.source == "amazon":
    a = c.amazon
    return read_amazon(c.path, sequence_file=a.sequence_file,
                       attributes_file=a.attributes_file, reviews_file=a.reviews_file,
                       meta_file=a.meta_file, drop_root=a.drop_root,
                       allow_missing_metadata=a.allow_missing_metadata,
                       max_description_chars=int(a.max_description_chars), seed=int(c.seed))
  return read_generic_folder(c.path, c.generic.items_file, c.generic.events_file)
