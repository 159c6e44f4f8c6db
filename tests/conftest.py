"""Shared test setup.

* 8 fake CPU devices for every test process (multi-device code is tested on
  them); this must happen before jax is imported anywhere.
* `shared_data` fixture: ../shared/data, or a skip with the reason.
"""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("GENRET_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_dataset(name: str) -> pathlib.Path:
  """Path of ../shared/data/<name>, skipping the test when it is absent."""
  path = SHARED_DATA / name
  if not path.is_dir():
    pytest.skip(f"dataset folder {path} is absent (real datasets live in ../shared/data, "
                "never in the repo)")
  return path


@pytest.fixture
def movielens_dir() -> pathlib.Path:
  return shared_dataset("ml-latest-small")


@pytest.fixture
def beauty_dir() -> pathlib.Path:
  return shared_dataset("amazon-beauty")


def set_keys(config, **overrides):
  """Sets dotted config keys in place (`set_keys(c, **{"train.num_steps": 3})`); returns it."""
  from genret_jax import config as config_lib  # pylint: disable=g-import-not-at-top  (after XLA_FLAGS)
  for key, value in overrides.items():
    config_lib.set_key(config, key, value)
  return config


# The modules that take longest (seconds of 2-core time, pytest --durations), started
# first so that the xdist workers finish together: with `--dist loadscope` a module
# runs on one worker, and a long module picked last sets the suite's wall time.
# setup.cfg's `--no-loadscope-reorder` keeps this order (xdist's default sorts
# modules by test count). Every other module keeps its collection order after these.
LONGEST_FIRST = (
    "test_known_answer.py",          # the default recipe trained to convergence
    "test_launch_multiprocess.py",   # 1 x 4 and 2 x 2 processes, compiled cold
    "test_pipeline_tables.py",
    "test_train.py",
    "test_pipeline.py",
    "test_aot_compile.py",
    "test_bench_scale.py",
    "test_checkpoint.py",
    "test_tasks.py",
)


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable
