"""The main job as a user runs it, for the pipeline tests: `python -m genret_jax.main`
at scale=smoke in a subprocess with ONE CPU device.

A smoke job's steps are tiny, so on 8 fake devices (the rest of the suite's
setting) SPMD partitioning doubles its compile and step time for nothing the
pipeline tests check. Multi-device jobs are tested by
tests/test_launch_multiprocess.py (1 x 4 and 2 x 2 devices).
"""

import json
import os
import subprocess
import sys
import time

from genret_jax import config as config_lib
from tests import train_tasks
from tests.conftest import REPO, set_keys

CACHE_ENV = train_tasks.use_compilation_cache()


def config(rel: str, **overrides):
  """The resolved smoke config of `rel` with dotted-key `overrides`."""
  c = config_lib.load_sibling(str(REPO / "x"), rel).get_config()
  c.scale = "smoke"
  return config_lib.resolve(set_keys(c, **overrides))


def run_cli(workdir, rel: str, mode: str = "all", check: bool = True, scale: str = "smoke",
            **overrides):
  """Runs the main job of `rel` at `scale` on 1 CPU device: (process, seconds)."""
  env = {**os.environ, **CACHE_ENV, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "",
         "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  args = [sys.executable, "-m", "genret_jax.main", f"--config={rel}", f"--config.scale={scale}",
          f"--workdir={workdir}", f"--mode={mode}",
          *(f"--config.{k}={v}" for k, v in overrides.items())]
  t0 = time.time()
  proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  if check:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc, time.time() - t0


def read_json(path):
  with open(path) as f:
    return json.load(f)
