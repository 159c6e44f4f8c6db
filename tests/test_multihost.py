"""A 2-process jax.distributed run (gloo on 127.0.0.1, 2 CPU devices each)
trains exactly like 1 process with the same 4 devices."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests import train_tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE_ENV = train_tasks.use_compilation_cache()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run(tmp_path, name, num_processes, devices_per_process):
  env = {**os.environ, **CACHE_ENV, "PYTHONPATH": REPO, "CUDA_VISIBLE_DEVICES": "",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}
  port, out = str(_free_port()), str(tmp_path / f"{name}.npz")
  workdir = str(tmp_path / name)
  procs = [subprocess.Popen(
      [sys.executable, "-m", "tests.train_multihost_child", workdir, out, port, str(i),
       str(num_processes)], cwd=REPO, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) for i in range(num_processes)]
  logs = [p.communicate(timeout=900)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  return np.load(out), logs


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
  one, _ = _run(tmp_path, "one", 1, 4)
  two, logs = _run(tmp_path, "two", 2, 2)
  assert int(one["devices"]) == int(two["devices"]) == 4
  assert int(one["processes"]) == 1 and int(two["processes"]) == 2
  for key in [k for k in one.files if k.startswith("history/")]:
    np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)
  for key in [k for k in one.files if k.startswith("eval/")]:
    np.testing.assert_allclose(two[key], one[key], rtol=1e-5, err_msg=key)
  params = [k for k in one.files if k.startswith("params/")]
  assert params and set(params) == {k for k in two.files if k.startswith("params/")}
  for key in params:
    np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)
  # Only process 0 prints progress lines.
  assert "step 3/3" in logs[0] and "step 3/3" not in logs[1]
