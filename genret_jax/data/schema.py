"""The canonical tables every reader produces and every later stage consumes.

A dataset is a `Catalog` (one row per item) plus `Events` (one row per
interaction). Items are referred to by their *index* in the catalog
(`int32` in `[0, num_items)`); original ids are kept in `Catalog.item_ids` for
reporting. Users likewise are dense indices with originals in
`Events.user_ids`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

REC = 0      # behaviour code: a recommendation interaction (click / rating / play)
SEARCH = 1   # behaviour code: a search interaction (query issued, then item)
BEHAVIOURS = ("rec", "search")


@dataclasses.dataclass(frozen=True)
class Catalog:
  """Items and their text.

  Attributes:
    item_ids: str[num_items], original item ids (unique).
    fields: text field name -> str[num_items] (e.g. title, categories, tags,
      brand, description); '' where unknown.
  """
  item_ids: np.ndarray
  fields: dict[str, np.ndarray]

  @property
  def num_items(self) -> int:
    return int(self.item_ids.shape[0])

  def text(self, index: int, field_order: tuple[str, ...] | None = None) -> str:
    """One item's text: its non-empty fields joined by '; ' in field order."""
    names = field_order or tuple(self.fields)
    return "; ".join(str(self.fields[f][index]) for f in names
                     if str(self.fields[f][index]))

  def texts(self, field_order: tuple[str, ...] | None = None) -> list[str]:
    return [self.text(i, field_order) for i in range(self.num_items)]


@dataclasses.dataclass(frozen=True)
class Events:
  """Interactions, sorted by (user, timestamp, original order).

  Attributes:
    user: int32[E], dense user index.
    item: int32[E], item index into the Catalog.
    timestamp: int64[E], seconds (or sequence positions when the source has
      no timestamps; `Events.synthetic_time` then says so).
    behaviour: int8[E], REC or SEARCH.
    query: str[E] (object array), query text for SEARCH events, '' for REC.
    user_ids: str[num_users], original user ids.
    synthetic_time: True when timestamps are sequence positions.
  """
  user: np.ndarray
  item: np.ndarray
  timestamp: np.ndarray
  behaviour: np.ndarray
  query: np.ndarray
  user_ids: np.ndarray
  synthetic_time: bool = False

  @property
  def num_events(self) -> int:
    return int(self.user.shape[0])

  @property
  def num_users(self) -> int:
    return int(self.user_ids.shape[0])
