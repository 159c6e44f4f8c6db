"""The one thing every identifier scheme produces: `IdTable`s.

An ID scheme maps each catalog item to a sequence of L codes; code `k` at level
`l` is the vocabulary token `<{level_prefixes[l]}_{k}>`. Two tables may share
levels (GenSAR: semantic and collaborative IDs share the 2 shared levels, so
they use the same prefixes there and hence the same tokens).

`ItemIdentifiers` says which table each task writes items with: `search` (the
item after a query) and `rec` (a recommended item / history item). For every
scheme but GenSAR both are the same table.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np


@dataclasses.dataclass(frozen=True)
class IdTable:
  """Item -> code sequence.

  Attributes:
    name: 'atomic', 'rq_kmeans', 'semantic', 'collaborative', ...
    codes: int32[num_items, L], codes[i, l] in [0, level_sizes[l]).
    level_prefixes: L token prefixes, e.g. ('item',) or ('c0', 'c1', 'c2').
    level_sizes: L codebook sizes.
  """
  name: str
  codes: np.ndarray
  level_prefixes: tuple[str, ...]
  level_sizes: tuple[int, ...]

  def __post_init__(self):
    if self.codes.ndim != 2 or self.codes.shape[1] != len(self.level_prefixes):
      raise ValueError(f"IdTable {self.name}: codes shape {self.codes.shape} "
                       f"does not match {len(self.level_prefixes)} levels")
    if len(self.level_sizes) != len(self.level_prefixes):
      raise ValueError(f"IdTable {self.name}: level_sizes/prefixes mismatch")

  @property
  def length(self) -> int:
    return int(self.codes.shape[1])

  def level_tokens(self, level: int) -> list[str]:
    """The vocabulary tokens of one level, in code order."""
    p = self.level_prefixes[level]
    return [f"<{p}_{k}>" for k in range(self.level_sizes[level])]

  def item_tokens(self, index: int) -> list[str]:
    return [f"<{p}_{int(c)}>" for p, c in zip(self.level_prefixes, self.codes[index])]


@dataclasses.dataclass(frozen=True)
class ItemIdentifiers:
  """The tables used by the tasks. `search` and `rec` may be the same object."""
  scheme: str
  search: IdTable
  rec: IdTable

  def tables(self) -> list[IdTable]:
    return [self.search] if self.search is self.rec else [self.search, self.rec]

  def extra_tokens(self) -> list[str]:
    """All ID tokens, deduplicated by level prefix, in a deterministic order."""
    seen: dict[str, int] = {}
    for t in self.tables():
      for p, s in zip(t.level_prefixes, t.level_sizes):
        seen[p] = max(seen.get(p, 0), s)
    return [f"<{p}_{k}>" for p, s in seen.items() for k in range(s)]

  def save(self, directory: str) -> None:
    """Writes ids.npz + ids.json into `directory` (caller makes it atomic)."""
    os.makedirs(directory, exist_ok=True)
    arrays, meta = {}, {"scheme": self.scheme, "tables": {}}
    for role, t in (("search", self.search), ("rec", self.rec)):
      arrays[role] = t.codes.astype(np.int32)
      meta["tables"][role] = {"name": t.name, "level_prefixes": list(t.level_prefixes),
                              "level_sizes": list(t.level_sizes)}
    np.savez(os.path.join(directory, "ids.npz"), **arrays)
    with open(os.path.join(directory, "ids.json"), "w") as f:
      json.dump(meta, f, indent=1)

  @classmethod
  def load(cls, directory: str) -> "ItemIdentifiers":
    with open(os.path.join(directory, "ids.json")) as f:
      meta = json.load(f)
    arrays = np.load(os.path.join(directory, "ids.npz"))
    tables = {}
    for role in ("search", "rec"):
      m = meta["tables"][role]
      tables[role] = IdTable(m["name"], arrays[role].astype(np.int32),
                             tuple(m["level_prefixes"]), tuple(m["level_sizes"]))
    same = (meta["tables"]["search"] == meta["tables"]["rec"]
            and np.array_equal(tables["search"].codes, tables["rec"].codes))
    rec = tables["search"] if same else tables["rec"]
    return cls(meta["scheme"], tables["search"], rec)


def atomic_ids(num_items: int) -> ItemIdentifiers:
  """One new token per item, shared by both tasks (Penha et al. 2024)."""
  table = IdTable("atomic", np.arange(num_items, dtype=np.int32)[:, None],
                  ("item",), (num_items,))
  return ItemIdentifiers("atomic", table, table)
