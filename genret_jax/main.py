r"""The one entry point.

  python -m genret_jax.main --config=configs/joint.py --workdir=/tmp/genret [--mode=all]

Modes: prepare (raw data -> prepared dataset + vocabulary), ids (item
identifiers), train, eval, all (every step in order, each skipped when its
output already exists for the same config).

Errors (bad input data, config, workdir state, filesystem) end the run with
one `error: ...` line on stderr and exit code 1 (2 for a bad flag or config
file). TensorFlow / XLA start-up logging is off unless `--verbosity` (absl's
flag, e.g. `--verbosity=0`) is given, so that line is the last one a user sees.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import Iterator

from absl import app, flags, logging
import ml_collections
from ml_collections import config_flags

from genret_jax.errors import GenRetError, os_error

# Environment that silences TensorFlow / XLA / gRPC C++ start-up logging (cuInit
# failures, oneDNN notes, "All log messages before absl::InitializeLog()").
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "3"}

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/joint.py", "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/genret", "Where everything is written.")
_MODE = flags.DEFINE_enum("mode", "all", ["prepare", "ids", "train", "eval", "analyze", "report", "all"],
                          "Which step(s) to run.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "jax.distributed: auto = when the flags below are given or a Slurm/MPI/TPU-pod "
    "launch is detected; on = always; off = never.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def _hide_gpus_from_tensorflow() -> None:
  """TensorFlow only feeds data; it must not grab accelerator memory."""
  # Imported after jax.distributed.initialize (see run), under the quiet stderr.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")


@contextlib.contextmanager
def stderr_silenced(active: bool = True) -> Iterator[None]:
  """File descriptor 2 goes to /dev/null while `active` (TensorFlow and XLA log from C++
  straight to it at start-up, whatever TF_CPP_MIN_LOG_LEVEL says). An exception
  raised inside is reported after stderr is back."""
  if not active:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  os.close(devnull)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


def run(config, workdir: str, mode: str, quiet: bool = False) -> None:
  """Starts JAX (jax.distributed first: nothing may touch the XLA backend before it)
  and TensorFlow - with their start-up logging hidden when `quiet` - then runs the job."""
  # Imported here, not at the top: the XLA backend must not start before
  # jax.distributed.initialize, and start-up logs go to the quiet stderr.
  with stderr_silenced(quiet):
    # (distributed imports jax, whose plugins may log on import.)
    from genret_jax import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                         _PROCESS_ID.value)
  with stderr_silenced(quiet):
    # After jax.distributed.initialize: now the backend may start.
    import jax  # pylint: disable=g-import-not-at-top
    jax.devices()     # backend start-up (CUDA / TPU probing) logs here
    # The pipeline imports TensorFlow and seqio (their start-up logs, quiet).
    from genret_jax import pipeline  # pylint: disable=g-import-not-at-top
    _hide_gpus_from_tensorflow()
  pipeline.common.enable_compilation_cache(config, workdir)
  distributed.check_same_config(config)
  pipeline.run(config, workdir, mode)


def verbose_requested(argv: list[str]) -> bool:
  """Whether the command line sets absl's --verbosity (-v)."""
  return any(a in ("-v", "--verbosity", "--v") or a.startswith(("-v=", "--verbosity=", "--v="))
             for a in argv[1:])


def quiet_startup(argv: list[str]) -> None:
  """Unless --verbosity is given, TensorFlow / XLA start-up logging off (must run
  before they are imported; values already in the environment win)."""
  if not verbose_requested(argv):
    for key, value in QUIET_ENV.items():
      os.environ.setdefault(key, value)


def _config_filename(argv: list[str]) -> str:
  """The --config file named on the command line (also when the flag failed to parse)."""
  try:
    return str(flags.FLAGS["config"].config_filename)
  except Exception:  # pylint: disable=broad-except  # unparsed flag
    pass
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      return a.split("=", 1)[1]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return str(flags.FLAGS["config"].default)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with config problems reported as one line and exit 2.

  ml_collections raises KeyError/AttributeError for an unknown `--config.key`
  override and absl a flags.Error for a malformed value; an unloadable config
  file surfaces when its value is first read.
  """
  try:
    rest = flags.FLAGS(argv)
    if not isinstance(_CONFIG.value, ml_collections.ConfigDict):
      _CONFIG.value.keys()  # an unloadable config file: raises its load error
    return rest
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
  except (KeyError, AttributeError) as e:
    if not os.path.isfile(_config_filename(argv)):
      print(f"error: cannot load --config={_config_filename(argv)}: no such file",
            file=sys.stderr)
      sys.exit(2)
    # ml_collections names only the last path component, maybe with a hint.
    text = str(e).replace("\\'", "'").replace("\\n", "\n")
    name = re.search(r"'([A-Za-z0-9_]+)'", text)
    hint = re.search(r"Did you mean \"([^\"]+)\"", text)
    overrides = [a.split("=", 1)[0][len("--config."):] for a in argv if a.startswith("--config.")]
    key = next((o for o in overrides if name and name.group(1) in o.split(".")),
               name.group(1) if name else text)
    suffix = f" (did you mean {hint.group(1)}?)" if hint else ""
    print(f"error: unknown config key config.{key}{suffix}", file=sys.stderr)
  except Exception as e:  # pylint: disable=broad-except
    why = "no such file" if not os.path.isfile(_config_filename(argv)) else " ".join(
        str(e).split())[:300]
    print(f"error: cannot load --config={_config_filename(argv)}: {why}", file=sys.stderr)
  sys.exit(2)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  quiet = not flags.FLAGS["verbosity"].present
  if quiet:
    logging.set_verbosity(logging.ERROR)
  try:
    run(_CONFIG.value, _WORKDIR.value, _MODE.value, quiet)
  except GenRetError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except OSError as e:   # a filesystem failure no step anticipated: still one line
    print(f"error: {os_error(e)}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  quiet_startup(sys.argv)
  app.run(main, flags_parser=parse_flags)
