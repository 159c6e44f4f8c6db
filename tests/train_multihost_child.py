"""One process of a multi-process training run, for tests/test_multihost.py.

  python -m tests.train_multihost_child WORKDIR OUT.npz PORT PROCESS_ID NUM_PROCESSES

Starts jax.distributed over gloo on 127.0.0.1:PORT (genret_jax.distributed),
trains the synthetic task for 3 steps on a mesh over all processes' devices
(2 input shards, one evaluation and one checkpoint at the end) and, on
process 0, writes OUT.npz with the per-step metrics (history/<name>), the eval
metrics (eval/<name>) and the final parameters (params/<path>).
"""

import sys

import jax
import numpy as np

from genret_jax import distributed
from tests import train_tasks


def config():
  return train_tasks.config(num_steps=3, input_shards=2, eval_every=3, checkpoint_every=3)


def main(argv):
  workdir, out, port, pid, count = argv[1], argv[2], argv[3], int(argv[4]), int(argv[5])
  distributed.initialize("auto", f"127.0.0.1:{port}", count, pid)
  train_tasks.use_compilation_cache()
  from genret_jax.train import trainer  # pylint: disable=g-import-not-at-top
  result = trainer.train(config(), workdir, mixture_name=train_tasks.register(),
                         vocab_size=train_tasks.VOCAB_SIZE)
  if jax.process_index() == 0:
    arrays = {f"history/{k}": v for k, v in result["history"].items()}
    arrays.update({f"eval/{k}": np.float64(v) for k, v in result["eval"].items()})
    flat = jax.tree_util.tree_flatten_with_path(result["state"].params)[0]
    arrays.update({f"params/{jax.tree_util.keystr(p)}": np.asarray(x) for p, x in flat})
    np.savez(out, devices=jax.device_count(), processes=jax.process_count(), **arrays)


if __name__ == "__main__":
  main(sys.argv)
