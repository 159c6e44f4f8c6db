"""train.input_shards: the process-count-independent default, the per-process
check, and resuming a checkpoint whose shard count differs from the default.

The test session has 8 fake CPU devices (conftest), so the default for a batch of
8 is 8 shards. The 2-process x 2-device vs 1 x 4 end-to-end check is
tests/test_launch_multiprocess.py.
"""

import jax
import numpy as np
import pytest

from genret_jax.errors import ConfigError
from genret_jax.model import partitioning
from genret_jax.train import input_pipeline, trainer
from tests import train_tasks

train_tasks.use_compilation_cache()
TASK = train_tasks.register()


def _sharding(data: int, model: int):
  return partitioning.data_sharding(partitioning.make_mesh({"data": data, "model": model}))


def test_default_is_gcd_of_batch_and_global_device_count():
  assert jax.device_count() == 8
  assert [input_pipeline.default_input_shards(b) for b in (8, 16, 12, 2, 1)] == [8, 8, 4, 2, 1]
  # The same whatever the mesh's data x model split (and the number of processes).
  for data, model in ((8, 1), (2, 4), (1, 8)):
    assert input_pipeline.num_input_shards(0, 16, _sharding(data, model)) == 8
  # A 1-device mesh on this 8-device runtime reads the same 8 blocks.
  one = partitioning.data_sharding(partitioning.make_mesh({"data": 1, "model": 1},
                                                          jax.devices()[:1]))
  assert input_pipeline.num_input_shards(0, 8, one) == 8
  assert input_pipeline.local_shards(one, 8, 8) == list(range(8))
  assert input_pipeline.local_shards(_sharding(2, 4), 12, 4) == [0, 1, 2, 3]


def test_explicit_shards_must_divide_the_batch():
  with pytest.raises(ConfigError, match=r"^config\.train\.input_shards: 3 shards .* divide "
                     r"train\.batch_size=8"):
    input_pipeline.num_input_shards(3, 8, _sharding(8, 1))


def test_shards_must_divide_among_processes(monkeypatch):
  """Every process checks every process's rows (faked: 2 processes x 4 rows)."""
  monkeypatch.setattr(input_pipeline, "_rows_by_process",
                      lambda sharding, batch_size: {0: set(range(4)), 1: set(range(4, 8))})
  sharding = _sharding(2, 4)
  assert input_pipeline.num_input_shards(2, 8, sharding) == 2
  assert input_pipeline.num_input_shards(0, 8, sharding) == 8
  with pytest.raises(ConfigError, match=r"^config\.train\.input_shards: 1 shards of 8 rows "
                     r"cannot be divided among the .* process 0 holds rows \[0, 4\)"):
    input_pipeline.num_input_shards(1, 8, sharding)
  monkeypatch.setattr(input_pipeline, "_rows_by_process",
                      lambda sharding, batch_size: {0: {0, 1, 4, 5}, 1: {2, 3, 6, 7}})
  with pytest.raises(ConfigError, match=r"process 0 holds 4 rows between 0 and 5, not a "
                     r"contiguous run"):
    input_pipeline.num_input_shards(2, 8, sharding)


class _Stop(Exception):
  pass


def _stop_at(step):
  def hook(s):
    if s == step:
      raise _Stop()
  return hook


@pytest.mark.slow
def test_resume_keeps_the_checkpoint_shard_count(tmp_path):
  """A run started with 2 shards resumes under the default (8 here) on its own stream."""
  config = train_tasks.config(num_steps=3, checkpoint_every=1, input_shards=2)
  reference = trainer.train_model(config, str(tmp_path / "ref"),
                                  trainer.build_model(config, train_tasks.VOCAB_SIZE),
                                  mixture_name=TASK)
  workdir = str(tmp_path / "run")
  with pytest.raises(_Stop):
    trainer.train_model(config, workdir, trainer.build_model(config, train_tasks.VOCAB_SIZE),
                        mixture_name=TASK, hooks=[_stop_at(3)])
  explicit = train_tasks.config(num_steps=3, checkpoint_every=1, input_shards=4)
  with pytest.raises(ConfigError, match=r"config\.train\.input_shards: is 4 .* with 2"):
    trainer.train(explicit, workdir, mixture_name=TASK, vocab_size=train_tasks.VOCAB_SIZE)
  default = train_tasks.config(num_steps=3, checkpoint_every=1)
  assert input_pipeline.default_input_shards(8) == 8
  resumed = trainer.train(default, workdir, mixture_name=TASK, vocab_size=train_tasks.VOCAB_SIZE)
  assert resumed["resumed_from"] == 2 and resumed["first_step"] == 3
  np.testing.assert_allclose(resumed["history"]["loss"], reference["history"]["loss"][2:],
                             rtol=1e-5)
