"""`launch/local_multiprocess.sh -n 2 -d 2` (2 processes x 2 CPU devices, gloo on
127.0.0.1) runs the main job exactly like 1 process x 4 devices with the DEFAULT
train.input_shards (gcd(batch_size, global device count) = 4 both ways), and only
process 0 writes the reports.

Both runs are the smoke-scale joint job cut to Gen_R+S alone, no baselines, no
analyses and 4 training steps. Which process writes which file is recorded by a
`sitecustomize` audit hook (an `open` for writing under the workdir), put on the
children's PYTHONPATH only.

The 1-process run uses the persistent compilation cache (tests/train_tasks.CACHE_DIR);
the 2-process run does not: JAX writes cache entries from process 0 only and process
1's keys differ on CPU, so with a warm cache process 0 would load the train step
while process 1 compiles it, and gloo gives up when one process reaches the first
collective more than 30 s before the other. Compiling on both keeps them in step.
Measured on the shared 2-core machine at load average 8-9: 314 s wall (~2.5 min
of CPU), most of it the 2-process run compiling and training.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap

import pytest

from tests import train_tasks
from tests.conftest import REPO

CACHE_ENV = train_tasks.use_compilation_cache()
NUM_STEPS = 4
JOB_ARGS = ["--config=configs/joint.py", "--config.scale=smoke", "--config.models=joint",
            "--config.baselines=", "--config.analyses=", f"--config.train.num_steps={NUM_STEPS}",
            f"--config.train.log_every={NUM_STEPS}"]
REPORTS = ("results.json", "results.md")

# Appends "<process_id> <path>" to $GENRET_WRITE_LOG/<pid>.txt for every file opened for
# writing, or renamed into place (os.rename / os.replace: atomic writes), under
# $GENRET_WRITE_ROOT (process_id from --process_id=, "single" without it).
_SITECUSTOMIZE = textwrap.dedent("""
    import os
    import sys

    _ROOT = os.environ.get("GENRET_WRITE_ROOT")
    _LOG = os.environ.get("GENRET_WRITE_LOG")

    def _hook(event, args):
      if event == "open":
        target, mode, flags = args[0], args[1], args[2]
        writes = (any(c in mode for c in "wax+") if isinstance(mode, str)
                  else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
      elif event == "os.rename":
        target, writes = args[1], True
      else:
        return
      if not writes or not isinstance(target, (str, bytes, os.PathLike)):
        return
      path = os.path.abspath(os.fsdecode(target))
      if path.startswith(_ROOT + os.sep):
        pid = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--process_id=")),
                   "single")
        with open(os.path.join(_LOG, f"{os.getpid()}.txt"), "a") as f:  # outside _ROOT
          f.write(f"{pid} {os.path.relpath(path, _ROOT)}\\n")

    if _ROOT:
      sys.addaudithook(_hook)
""")


def _env(tmp_path, name: str, devices: int, cache: bool) -> dict[str, str]:
  hook_dir, write_log = tmp_path / "hook", tmp_path / f"writes_{name}"
  hook_dir.mkdir(exist_ok=True)
  (hook_dir / "sitecustomize.py").write_text(_SITECUSTOMIZE)
  write_log.mkdir()
  cache_env = CACHE_ENV if cache else {"JAX_ENABLE_COMPILATION_CACHE": "false"}
  return {**os.environ, **cache_env, "PYTHONPATH": f"{hook_dir}{os.pathsep}{REPO}",
          "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
          "GENRET_WRITE_ROOT": str(tmp_path / name), "GENRET_WRITE_LOG": str(write_log),
          "LOG_DIR": str(tmp_path / f"logs_{name}")}


def _writes(tmp_path, name: str) -> dict[str, set[str]]:
  """{process id: workdir-relative paths it opened for writing}."""
  out: dict[str, set[str]] = {}
  for log in (tmp_path / f"writes_{name}").iterdir():
    for line in log.read_text().splitlines():
      pid, path = line.split(" ", 1)
      out.setdefault(pid, set()).add(path)
  return out


def _flatten(tree, prefix="") -> dict[str, float]:
  if isinstance(tree, dict):
    return {k: v for key, sub in tree.items() for k, v in _flatten(sub, f"{prefix}/{key}").items()}
  return {prefix: tree}


def _summary_lines(log: str) -> list[str]:
  """What process 0 prints of training and evaluation, without the timings: the
  `step N/M ... loss X` progress lines, the train summary and the eval lines."""
  steps = [m.group(0) for m in re.finditer(r"^step \d+/\d+ \(\d+%\) loss \S+", log, re.M)]
  return steps + [l for l in log.splitlines() if l.startswith(("train ", "eval "))]


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_default_input_shards(tmp_path):
  one = subprocess.run([sys.executable, "-m", "genret_jax.main", *JOB_ARGS,
                        f"--workdir={tmp_path / 'one'}"], cwd=REPO,
                       env=_env(tmp_path, "one", 4, cache=True), capture_output=True, text=True,
                       timeout=600)
  assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-3000:]
  two = subprocess.run(["bash", "launch/local_multiprocess.sh", "-n", "2", "-d", "2", "--",
                        *JOB_ARGS, f"--workdir={tmp_path / 'two'}"], cwd=REPO,
                       env=_env(tmp_path, "two", 2, cache=False), capture_output=True, text=True,
                       timeout=900)
  assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]

  # Same results, value for value, and the same per-step losses on the way.
  results = [json.loads((tmp_path / name / "results.json").read_text())
             for name in ("one", "two")]
  flat_one, flat_two = _flatten(results[0]), _flatten(results[1])
  assert flat_one and set(flat_one) == set(flat_two)
  for key, value in flat_one.items():
    assert math.isclose(flat_two[key], value, rel_tol=0, abs_tol=1e-6), key
  lines_one = _summary_lines(one.stdout)
  assert lines_one and any(l.startswith("train joint:") for l in lines_one), one.stdout[-2000:]
  assert _summary_lines(two.stdout) == lines_one  # the launcher prints process 0's log

  # Only process 0 writes the reports; process 1 writes nothing outside the checkpoints.
  writes = _writes(tmp_path, "two")
  assert set(REPORTS) <= writes.get("0", set()), sorted(writes.get("0", ()))
  outside = {p for p in writes.get("1", set()) if "/checkpoints/" not in f"/{p}"}
  assert not outside, sorted(outside)
  assert set(REPORTS) <= _writes(tmp_path, "one")["single"]
  log_1 = (tmp_path / "logs_two" / "process_1.log").read_text()
  assert "train joint:" not in log_1 and "| Gen_R+S |" not in log_1
