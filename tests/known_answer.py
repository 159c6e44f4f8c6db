"""Known-answer datasets in the generic format (docs/data.md), made inside the tests.

A model that reads its input solves them; one that collapses to popularity
cannot (every item is equally popular):

* rec: each user's rec events walk the catalog, the next item is always the
  last one + 1 (mod the catalog size), from a random start.
* search: every item has a unique two-word name; a search event's query is the
  name of the item chosen.

  python -m tests.known_answer OUT_DIR   # writes OUT_DIR/items.jsonl, events.jsonl
"""

from __future__ import annotations

import itertools
import json
import os
import sys

import numpy as np

_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def unique_names(num_items: int, seed: int = 0) -> list[str]:
  """`num_items` distinct two-word names of two-syllable pseudo-words."""
  rng = np.random.default_rng(seed)
  words = ["".join(p) for p in itertools.product(_SYLLABLES, repeat=2)]
  words = [words[i] for i in rng.permutation(len(words))]
  half = int(np.ceil(np.sqrt(num_items))) + 1
  first, second = words[:half], words[half:2 * half]
  pairs = [f"{a} {b}" for a in first for b in second]
  return [pairs[i] for i in rng.permutation(len(pairs))[:num_items]]


def write(folder: str, *, num_items: int = 200, num_users: int = 1000,
          rec_per_user: tuple[int, int] = (4, 16), search_per_user: int = 4, seed: int = 0
          ) -> dict[str, int]:
  """Writes items.jsonl and events.jsonl in `folder`; returns the event counts.

  Each user has a random number of rec events in [rec_per_user[0], rec_per_user[1]]
  (so the validation and test histories, the user's longest, are mostly as long as
  training histories of other users) and `search_per_user` searches.
  """
  rng = np.random.default_rng(seed)
  names = unique_names(num_items, seed)
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, "items.jsonl"), "w") as f:
    for i, name in enumerate(names):
      f.write(json.dumps({"item_id": f"i{i}", "title": name}) + "\n")
  counts = {"rec": 0, "search": 0}
  with open(os.path.join(folder, "events.jsonl"), "w") as f:
    for u in range(num_users):
      start = int(rng.integers(num_items))
      searched = rng.integers(num_items, size=search_per_user)
      t = 0
      for k in range(int(rng.integers(rec_per_user[0], rec_per_user[1] + 1))):
        t += 1
        f.write(json.dumps({"user_id": f"u{u}", "item_id": f"i{(start + k) % num_items}",
                            "timestamp": t, "behaviour": "rec"}) + "\n")
        counts["rec"] += 1
        if k < search_per_user:
          t += 1
          item = int(searched[k])
          f.write(json.dumps({"user_id": f"u{u}", "item_id": f"i{item}", "timestamp": t,
                              "behaviour": "search", "query": names[item]}) + "\n")
          counts["search"] += 1
  return counts


if __name__ == "__main__":
  print(write(sys.argv[1]))
