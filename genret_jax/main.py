r"""The one entry point.

  python -m genret_jax.main --config=configs/joint.py --workdir=/tmp/genret [--mode=all]

Modes: prepare (raw data -> prepared dataset + vocabulary), ids (item
identifiers), train, eval, all (every step in order, each skipped when its
output already exists for the same config).
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from genret_jax.errors import GenRetError

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/joint.py", "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/genret", "Where everything is written.")
_MODE = flags.DEFINE_enum("mode", "all", ["prepare", "ids", "train", "eval", "all"],
                          "Which step(s) to run.")


def _hide_gpus_from_tensorflow() -> None:
  """TensorFlow only feeds data; it must not grab accelerator memory."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")


def run(config, workdir: str, mode: str) -> None:
  from genret_jax import pipeline  # pylint: disable=g-import-not-at-top
  _hide_gpus_from_tensorflow()
  pipeline.run(config, workdir, mode)


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
  app.run(main)
