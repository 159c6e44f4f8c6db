"""jax.distributed start-up over gloo on 127.0.0.1 and the all-hosts-same-config check."""

import os
import socket
import subprocess
import sys
import textwrap

from tests.conftest import REPO

_SCRIPT = textwrap.dedent("""
    import sys
    import jax
    from genret_jax import distributed
    from genret_jax.config import get_base_config
    from genret_jax.errors import GenRetError
    port, pid, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    distributed.initialize("auto", f"127.0.0.1:{port}", 2, pid)
    assert jax.process_count() == 2 and jax.device_count() == 4, (jax.process_count(), jax.device_count())
    config = get_base_config()
    config.seed = seed
    try:
      distributed.check_same_config(config)
      print("SAME")
    except GenRetError as e:
      print("DIFFERENT:", e)
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(seeds):
  port = _free_port()
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
  procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT, str(port), str(i), str(s)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i, s in enumerate(seeds)]
  outs = [p.communicate(timeout=120) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  # gloo prints its own progress lines to stdout; keep ours.
  return [next(l for l in out.splitlines() if l.startswith(("SAME", "DIFFERENT")))
          for out, _ in outs]


def test_two_processes_same_config():
  assert _launch([0, 0]) == ["SAME", "SAME"]


def test_two_processes_different_config_fails_on_every_process():
  results = _launch([0, 1])
  assert all(r.startswith("DIFFERENT: processes [1] run a different config") for r in results), results


def test_partial_flags_are_a_config_error():
  import pytest  # pylint: disable=g-import-not-at-top
  from genret_jax import distributed  # pylint: disable=g-import-not-at-top
  from genret_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  with pytest.raises(ConfigError, match="must be given together"):
    distributed.initialize("auto", "127.0.0.1:1", 2, None)
