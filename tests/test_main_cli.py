"""The entry point rejects bad configs with one line and a non-zero exit, before any work,
and points the compilation cache at the workdir."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _main(tmp_path, *args):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, "-m", "genret_jax.main", f"--workdir={tmp_path}/w", *args],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("override,expected", [
    ("--config.data.bogus=1", "error: unknown config key config.data.bogus"),
    ("--config.nosuchblock.x=1", "error: unknown config key config.nosuchblock.x"),
    ("--config.vocab.sp_modell=x",
     "error: unknown config key config.vocab.sp_modell (did you mean sp_model?)"),
    ("--config.data.max_history=abc", "--config.data.max_history=abc"),
])
def test_bad_override_is_one_line_error(tmp_path, override, expected):
  r = _main(tmp_path, "--config=configs/joint.py", override, "--mode=prepare")
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1, r.stderr
  assert expected in lines[0]
  assert not os.path.exists(tmp_path / "w")  # nothing written


def test_missing_config_file(tmp_path):
  r = _main(tmp_path, "--config=configs/does_not_exist.py", "--mode=prepare")
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and "configs/does_not_exist.py" in lines[0], r.stderr
  assert not os.path.exists(tmp_path / "w")


def test_compilation_cache_folder_follows_the_workdir(tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  from genret_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from genret_jax.pipeline import common  # pylint: disable=g-import-not-at-top
  before = jax.config.jax_compilation_cache_dir
  c = config_lib.get_base_config()
  try:
    jax.config.update("jax_compilation_cache_dir", None)
    c.jax_cache_dir = ""
    assert common.enable_compilation_cache(c, str(tmp_path)) is None
    assert jax.config.jax_compilation_cache_dir is None
    c.jax_cache_dir = "jax_cache"
    assert common.enable_compilation_cache(c, str(tmp_path)) == str(tmp_path / "jax_cache")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax_cache")
    # A folder already set (JAX_COMPILATION_CACHE_DIR) wins.
    c.jax_cache_dir = str(tmp_path / "elsewhere")
    assert common.enable_compilation_cache(c, str(tmp_path)) == str(tmp_path / "jax_cache")
  finally:
    jax.config.update("jax_compilation_cache_dir", before)
