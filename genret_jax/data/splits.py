"""Chronological leave-one-out splits.

For every user and every behaviour separately (rec events, search events), in
time order: the last event is TEST, the second-to-last VALID, the rest TRAIN.
A user with only two events of a behaviour gives TRAIN + TEST; with one, TRAIN
only (nothing to learn from otherwise). Model inputs for an evaluation event
only ever contain events strictly before it in the user's timeline.
"""

from __future__ import annotations

import numpy as np

from genret_jax.data.schema import Events

TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "validation", "test")


def leave_one_out(events: Events) -> np.ndarray:
  """int8[E]: TRAIN / VALID / TEST per event (events sorted by user, time)."""
  key = events.user.astype(np.int64) * 2 + events.behaviour.astype(np.int64)
  order = np.lexsort((np.arange(events.num_events), events.timestamp, key))
  sorted_key = key[order]
  # Position of each event from the end of its (user, behaviour) group.
  is_last = np.ones(len(order), dtype=bool)
  is_last[:-1] = sorted_key[1:] != sorted_key[:-1]
  group_end = np.minimum.accumulate(np.where(is_last, np.arange(len(order)), len(order))[::-1])[::-1]
  from_end = group_end - np.arange(len(order))
  _, group, counts = np.unique(sorted_key, return_inverse=True, return_counts=True)
  group_size = counts[group]
  split_sorted = np.full(len(order), TRAIN, dtype=np.int8)
  split_sorted[(from_end == 0) & (group_size >= 2)] = TEST
  split_sorted[(from_end == 1) & (group_size >= 3)] = VALID
  split = np.empty_like(split_sorted)
  split[order] = split_sorted
  return split
