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
  for key, value in overrides.items():
    node = config
    *head, last = key.split(".")
    for p in head:
      node = node[p]
    node[last] = value
  return config
