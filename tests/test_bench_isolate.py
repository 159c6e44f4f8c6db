"""bench.isolate: a benchmark side built and called in its own spawned process."""

import os

import pytest

from genret_jax.bench import isolate
from genret_jax.bench import train as bench_train


class Counter:
  """Lives in the child: its pid and a running total."""

  def __init__(self, start: int):
    self.total, self.pid = start, os.getpid()

  def add(self, x: int) -> int:
    self.total += x
    return self.total

  def fail(self):
    raise ValueError("boom in the child")


class _Unbuildable:
  def __init__(self):
    raise KeyError("no such side")


def _vocab_flag() -> Counter:
  return Counter(bench_train._VOCAB.value)  # pylint: disable=protected-access


def test_calls_run_in_another_process_and_keep_state():
  side = isolate.Isolated(Counter, 5)
  try:
    assert side.get("pid") != os.getpid()
    assert side.call("add", 2) == 7 and side.call("add", 3) == 10
    assert side.get("total") == 10
  finally:
    side.close()


def test_the_child_parses_the_command_line_it_is_given():
  side = isolate.Isolated(_vocab_flag, argv=["bench", "--vocab_size=512"])
  try:
    assert side.get("total") == 512
  finally:
    side.close()


def test_errors_in_the_child_are_raised_with_its_traceback():
  side = isolate.Isolated(Counter, 0)
  try:
    with pytest.raises(isolate.IsolatedError, match=r"(?s)fail in the child.*ValueError: boom"):
      side.call("fail")
    assert side.call("add", 1) == 1          # the child survives a failed call
  finally:
    side.close()
  with pytest.raises(isolate.IsolatedError, match=r"(?s)building _Unbuildable.*KeyError"):
    isolate.Isolated(_Unbuildable)
