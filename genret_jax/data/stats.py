"""The statistics table printed by `--mode=prepare`."""

from __future__ import annotations

import numpy as np

from genret_jax.data.schema import BEHAVIOURS, SEARCH, Events
from genret_jax.data.splits import SPLIT_NAMES, TRAIN


def statistics(events: Events, split: np.ndarray, num_items: int) -> dict:
  """Counts: users, items, events per behaviour, distinct queries, per split x behaviour."""
  per_split = np.zeros((len(SPLIT_NAMES), len(BEHAVIOURS)), np.int64)
  np.add.at(per_split, (split.astype(np.int64), events.behaviour.astype(np.int64)), 1)
  search = events.behaviour == SEARCH
  return {
      "users": events.num_users,
      "items": num_items,
      "rec_events": int((~search).sum()),
      "search_events": int(search.sum()),
      "distinct_queries": int(len(np.unique(events.query[search].astype(str)))),
      "per_split": {s: {b: int(per_split[i, j]) for j, b in enumerate(BEHAVIOURS)}
                    for i, s in enumerate(SPLIT_NAMES)},
  }


def format_table(name: str, stats: dict) -> str:
  """A Markdown table of `statistics(...)`."""
  rows = [("users", stats["users"]), ("items", stats["items"]),
          ("rec events", stats["rec_events"]), ("search events", stats["search_events"]),
          ("distinct queries", stats["distinct_queries"])]
  for s, counts in stats["per_split"].items():
    for b, n in counts.items():
      rows.append((f"{s} {b} events", n))
  width = max(len(r[0]) for r in rows)
  lines = [f"| {name:<{width}} | {'count':>10} |", f"|{'-' * (width + 2)}|{'-' * 11}:|"]
  lines += [f"| {k:<{width}} | {v:>10,} |" for k, v in rows]
  return "\n".join(lines)


def train_popularity(events: Events, split: np.ndarray, num_items: int) -> np.ndarray:
  """int64[2, num_items]: TRAIN events per (behaviour REC / SEARCH, item)."""
  keep = np.asarray(split) == TRAIN
  beh = events.behaviour[keep].astype(np.int64)
  flat = np.bincount(beh * num_items + events.item[keep], minlength=2 * num_items)
  return flat.reshape(2, num_items).astype(np.int64)
