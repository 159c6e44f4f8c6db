"""bench.isolate: a benchmark side built and called in its own spawned process."""

import os

import pytest
from absl import flags

from genret_jax.bench import isolate

# A flag of this module only (a bench module's flags, imported here, would clash with
# another bench module imported in-process by a test on the same worker).
_VALUE = flags.DEFINE_integer("isolate_test_value", 0, "Read by _flag_value in the child.")


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


def _flag_value() -> Counter:
  return Counter(_VALUE.value)


def test_calls_run_in_another_process_and_keep_state():
  side = isolate.Isolated(Counter, 5)
  try:
    assert side.get("pid") != os.getpid()
    assert side.call("add", 2) == 7 and side.call("add", 3) == 10
    assert side.get("total") == 10
  finally:
    side.close()


def test_the_child_parses_the_command_line_it_is_given():
  side = isolate.Isolated(_flag_value, argv=["bench", "--isolate_test_value=512"])
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
