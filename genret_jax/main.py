r"""The one entry point.

  python -m genret_jax.main --config=configs/joint.py --workdir=/tmp/genret [--mode=all]

Modes: prepare (raw data -> prepared dataset + vocabulary), ids (item
identifiers), train, eval, all (every step in order, each skipped when its
output already exists for the same config).
"""

from __future__ import annotations

import re
import sys

from absl import app, flags, logging
import ml_collections
from ml_collections import config_flags

from genret_jax.errors import GenRetError

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
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")


def run(config, workdir: str, mode: str) -> None:
  from genret_jax import distributed, pipeline  # pylint: disable=g-import-not-at-top
  _hide_gpus_from_tensorflow()
  pipeline.common.enable_compilation_cache(config, workdir)
  distributed.initialize(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                         _PROCESS_ID.value)
  distributed.check_same_config(config)
  pipeline.run(config, workdir, mode)


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
    print(f"error: cannot load --config={flags.FLAGS['config'].config_filename}: "
          f"{' '.join(str(e).split())}", file=sys.stderr)
  sys.exit(2)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  try:
    run(_CONFIG.value, _WORKDIR.value, _MODE.value)
  except GenRetError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
