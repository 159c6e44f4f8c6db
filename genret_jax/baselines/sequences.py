"""Per-user rec item sequences for sequential recommenders (vectorized numpy).

Items are shifted by +1 so that 0 is padding; sequences are left-padded.
"""

from __future__ import annotations

import numpy as np

from genret_jax.data.schema import REC, Events
from genret_jax.data.splits import TRAIN


def _rec_timeline(events: Events, split: np.ndarray):
  """REC events in (user, timestamp, original order): (user, item, split) arrays."""
  rec = np.flatnonzero(events.behaviour == REC)
  order = rec[np.lexsort((rec, events.timestamp[rec], events.user[rec]))]
  return events.user[order], events.item[order], split[order]


def _windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
  """int32[len(ends), width]: items[max(start, end-width):end] + 1, left-padded with 0."""
  idx = ends[:, None] - np.arange(width, 0, -1)[None, :]
  valid = idx >= starts[:, None]
  return np.where(valid, items[np.clip(idx, 0, None)] + 1, 0).astype(np.int32)


def train_sequences(events: Events, split: np.ndarray, max_len: int,
                    all_windows: bool = False) -> np.ndarray:
  """int32[S, max_len + 1]: TRAIN rec item windows, one row per training sequence.

  By default one row per user: the last max_len + 1 TRAIN rec items (as in
  SASRec). With all_windows, a user's whole TRAIN history is cut from the end
  into windows of max_len + 1 items overlapping by one, so every transition
  is trained exactly once per epoch. Only windows with >= 2 items.
  """
  user, item, sp = _rec_timeline(events, split)
  keep = sp == TRAIN
  user, item = user[keep], item[keep]
  if user.size == 0:
    return np.zeros((0, max_len + 1), np.int32)
  bounds = np.flatnonzero(np.diff(user)) + 1
  starts = np.concatenate([[0], bounds])
  ends = np.concatenate([bounds, [user.size]])
  many = (ends - starts) >= 2
  starts, ends = starts[many], ends[many]
  if all_windows:
    count = -(-(ends - starts - 1) // max_len)           # windows per user
    j = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    ends = np.repeat(ends, count) - j * max_len
    starts = np.repeat(starts, count)
  return _windows(item, starts, ends, max_len + 1)


def eval_examples(events: Events, split: np.ndarray, which: int,
                  max_len: int) -> tuple[np.ndarray, np.ndarray]:
  """Rec events of split `which` with their histories.

  Returns:
    (int32[E', max_len] the user's last max_len rec items strictly before the
     event (+1, left-padded), int32[E'] the event's item).
  """
  user, item, sp = _rec_timeline(events, split)
  pos = np.flatnonzero(sp == which)
  first = np.concatenate([[True], user[1:] != user[:-1]]) if user.size else np.zeros(0, bool)
  user_start = np.maximum.accumulate(np.where(first, np.arange(user.size), 0)) if user.size \
      else np.zeros(0, np.int64)
  return _windows(item, user_start[pos], pos, max_len), item[pos].astype(np.int32)
