"""One benchmark side per process: an object built and called in a spawned child.

Why: JAX and torch in one process slow each other down, measured on the 2-core
box (docs/benchmarks.md, "One process per side"): after a Hugging Face T5-small
training step, our next XLA steps ran 1.4-2.2x slower than before it (10.8 s
against 5.0 s a step, 6.9 s still two seconds later), with ~10 s of extra system
time a step in page faults. Users run one framework per process, so each side
of a comparison gets its own process, and the parent only alternates the calls.

  side = Isolated(Ours, "small", argv=sys.argv)   # builds Ours("small") in a child
  seconds = side.call("run", batches)             # runs there, returns the result
  side.get("num_params"); side.close()

`factory` and every argument and result cross a pipe, so they must pickle
(module-level classes and functions, numpy arrays, plain values). The child
parses `argv` with absl's flags first, so factories may read flag values.
An exception in the child is raised in the parent as `IsolatedError` with the
child's traceback; the child stays up after a failed call (not a failed build).
"""

from __future__ import annotations

import multiprocessing
import traceback
from typing import Any, Callable

from absl import flags


class IsolatedError(RuntimeError):
  """An exception raised inside the child; the message holds its traceback."""


def _serve(conn, argv: list[str] | None, factory: Callable[..., Any], args: tuple,
           kwargs: dict) -> None:
  try:
    if argv is not None:
      flags.FLAGS(argv, known_only=True)
    obj = factory(*args, **kwargs)
    conn.send(("ok", None))
  except Exception:  # pylint: disable=broad-except  (reported to the parent)
    conn.send(("error", traceback.format_exc()))
    return
  while True:
    message = conn.recv()
    if message is None:
      return
    kind, name, call_args = message
    try:
      value = getattr(obj, name)
      conn.send(("ok", value(*call_args) if kind == "call" else value))
    except Exception:  # pylint: disable=broad-except  (reported to the parent)
      conn.send(("error", traceback.format_exc()))


class Isolated:
  """`factory(*args, **kwargs)` living in its own spawned process."""

  def __init__(self, factory: Callable[..., Any], *args, argv: list[str] | None = None,
               **kwargs):
    context = multiprocessing.get_context("spawn")
    self._conn, child = context.Pipe()
    self._process = context.Process(target=_serve, args=(child, argv, factory, args, kwargs),
                                    daemon=True)
    self._process.start()
    child.close()
    try:
      self._reply(f"building {getattr(factory, '__name__', factory)}")
    except IsolatedError:
      self.close()
      raise

  def _reply(self, what: str) -> Any:
    status, value = self._conn.recv()
    if status == "error":
      raise IsolatedError(f"{what} in the child process failed:\n{value}")
    return value

  def call(self, method: str, *args) -> Any:
    """obj.method(*args) in the child; its return value."""
    self._conn.send(("call", method, args))
    return self._reply(method)

  def get(self, attribute: str) -> Any:
    """obj.attribute in the child."""
    self._conn.send(("get", attribute, ()))
    return self._reply(attribute)

  def close(self) -> None:
    """Ends the child and waits for it (so getrusage(RUSAGE_CHILDREN) counts its CPU)."""
    if self._process.is_alive():
      try:
        self._conn.send(None)
      except (BrokenPipeError, OSError):
        pass
    self._process.join(timeout=60)
    if self._process.is_alive():
      self._process.kill()
      self._process.join()
    self._conn.close()
