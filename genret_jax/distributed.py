"""Multi-process start-up: `jax.distributed` when launched as several processes.

* Explicit (local multi-process, any cluster): coordinator address, process count and id
  given as flags; on CPU the collectives go over gloo.
* Auto (Slurm, Open MPI, Cloud TPU pods): `jax.distributed.initialize()` detects them.
* Otherwise a no-op: one process, all local devices.
"""

from __future__ import annotations

import hashlib
import json
import os

import jax
from jax.experimental import multihost_utils
import numpy as np

from genret_jax.errors import ConfigError, GenRetError


def _cluster_detected() -> bool:
  env = os.environ
  if int(env.get("SLURM_NTASKS", "1")) > 1 or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    return True
  return len(env.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1


def initialize(mode: str = "auto", coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None) -> None:
  """Starts jax.distributed if this run is one of several processes.

  Args:
    mode: 'auto' (explicit flags, else cluster auto-detection, else nothing),
      'on' (always initialize, auto-detecting what is not given), 'off'.
    coordinator_address: host:port of process 0.
    num_processes, process_id: this run's place among the processes.
  """
  if mode == "off":
    return
  explicit = coordinator_address is not None or (num_processes or 1) > 1
  if explicit:
    if not coordinator_address or num_processes is None or process_id is None:
      raise ConfigError("distributed", "--coordinator_address, --num_processes and "
                        "--process_id must be given together")
    # Cross-process collectives between CPU devices go over gloo (no effect on GPU/TPU).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  elif mode == "on" or _cluster_detected():
    jax.distributed.initialize()


def config_hash(config) -> str:
  """sha256 of the config's JSON form: identifies a run's settings."""
  text = json.dumps(config.to_dict(), sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()


def check_same_config(config) -> None:
  """Fails on every process unless all processes run the same config."""
  if jax.process_count() == 1:
    return
  digest = np.frombuffer(bytes.fromhex(config_hash(config)), dtype=np.uint32).astype(np.int64)
  gathered = np.asarray(multihost_utils.process_allgather(digest))
  if not (gathered == gathered[0]).all():
    bad = [i for i in range(gathered.shape[0]) if not (gathered[i] == gathered[0]).all()]
    raise GenRetError(f"processes {bad} run a different config than process 0 "
                      "(config hashes differ); launch every process with the same flags")
