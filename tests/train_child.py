"""A training run in its own process, for the kill-and-resume test.

  python -m tests.train_child WORKDIR OUT.npz [PAUSE_AT_STEP]

Trains the synthetic task (tests/train_tasks.py) through the public
`trainer.train`, resuming from WORKDIR's latest checkpoint. With PAUSE_AT_STEP
it prints "PAUSED <step>" after dispatching that step (once an earlier
checkpoint is complete on disk) and sleeps until the parent SIGKILLs it.
Otherwise it writes OUT.npz: the per-step metrics of the steps it ran
(history/<name>), first_step, and every final parameter (params/<path>).
"""

import os
import sys
import time

import jax
import numpy as np

from tests import train_tasks
from genret_jax.train import trainer

NUM_STEPS = 8
CHECKPOINT_EVERY = 2


def config():
  return train_tasks.config(num_steps=NUM_STEPS, checkpoint_every=CHECKPOINT_EVERY,
                            async_checkpoints=True, keep_checkpoints=2, log_every=1)


def _committed_steps(workdir: str) -> list[int]:
  """Steps whose checkpoint directory is complete (orbax renames it when done)."""
  root = os.path.join(workdir, "checkpoints")
  names = os.listdir(root) if os.path.isdir(root) else []
  return [int(n) for n in names if n.isdigit()
          and os.path.exists(os.path.join(root, n, "_CHECKPOINT_METADATA"))]


def run(workdir: str, pause_at: int | None = None) -> dict:
  def pause(step):
    if step == pause_at:
      # Kill after a checkpoint: let the async save of an earlier step land.
      deadline = time.time() + 120
      while not _committed_steps(workdir) and time.time() < deadline:
        time.sleep(0.2)
      print(f"PAUSED {step}", flush=True)
      time.sleep(600)
  return trainer.train(config(), workdir, mixture_name=train_tasks.register(),
                       vocab_size=train_tasks.VOCAB_SIZE, hooks=[pause])


def flat_params(state) -> dict[str, np.ndarray]:
  flat = jax.tree_util.tree_flatten_with_path(jax.device_get(state.params))[0]
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def main(argv):
  train_tasks.use_compilation_cache()
  workdir, out = argv[1], argv[2]
  pause_at = int(argv[3]) if len(argv) > 3 else None
  result = run(workdir, pause_at)
  arrays = {f"history/{k}": v for k, v in result["history"].items()}
  arrays.update({f"params/{k}": v for k, v in flat_params(result["state"]).items()})
  np.savez(out, first_step=result["first_step"], **arrays)


if __name__ == "__main__":
  main(sys.argv)
