"""bench.train's command line (the benchmark itself is run by hand, docs/benchmarks.md)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("dims", ["emb_dim", "emb_dim=0", "width=128", "emb_dim=1e3"])
def test_bad_dims_are_a_usage_error_before_any_work(tmp_path, dims):
  out = tmp_path / "bench.json"
  r = subprocess.run([sys.executable, "-m", "genret_jax.bench.train", f"--dims={dims}",
                      "--skip_hf", f"--out={out}"], cwd=REPO, capture_output=True, text=True,
                     env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
  assert r.returncode != 0
  assert f"--dims entry '{dims}': want key=positive int" in r.stderr + r.stdout
  assert not out.exists()
