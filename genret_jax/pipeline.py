"""prepare -> ids -> train -> eval, each step a function of (config, workdir)."""

from __future__ import annotations

import ml_collections

STEPS = ("prepare", "ids", "train", "eval")


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> None:
  steps = STEPS if mode == "all" else (mode,)
  for step in steps:
    if step == "prepare":
      from genret_jax.data import prepare  # pylint: disable=g-import-not-at-top
      prepare.prepare(config, workdir)
    else:
      raise NotImplementedError(f"--mode={step} lands with its issue")
