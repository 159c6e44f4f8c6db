"""Checkpoints: exact resume after SIGKILL, retention (latest N + best M),
and refusing to resume a checkpoint whose data stream the config changed."""

import os
import random
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from genret_jax.errors import ConfigError
from genret_jax.train import checkpoints
from genret_jax.train.state import TrainState
from tests import train_child, train_tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE_ENV = train_tasks.use_compilation_cache()


def _child(args, **kwargs):
  env = {**os.environ, **CACHE_ENV, "PYTHONPATH": REPO}
  return subprocess.Popen([sys.executable, "-m", "tests.train_child", *args], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.mark.slow
def test_sigkill_and_resume_is_bitwise_identical(tmp_path):
  # Reference: one uninterrupted run, in this process.
  reference = train_child.run(str(tmp_path / "reference"))
  ref_params = train_child.flat_params(reference["state"])
  assert reference["first_step"] == 1

  kill_step = random.Random().randint(train_child.CHECKPOINT_EVERY + 1, train_child.NUM_STEPS - 1)
  workdir = str(tmp_path / "killed")
  proc = _child([workdir, str(tmp_path / "unused.npz"), str(kill_step)])
  output = []
  for line in proc.stdout:
    output.append(line)
    if line.startswith(f"PAUSED {kill_step}"):
      os.kill(proc.pid, signal.SIGKILL)
      break
  proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL, "".join(output[-20:])

  ckpt = checkpoints.Checkpointer(checkpoints.checkpoint_dir(workdir), train_child.config().train)
  try:
    survived = ckpt.latest_step()
  finally:
    ckpt.close()
  assert survived is not None and survived <= kill_step, (kill_step, survived)

  out = tmp_path / "resumed.npz"
  proc = _child([workdir, str(out)])
  log, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, log[-3000:]
  resumed = np.load(out)
  assert int(resumed["first_step"]) == survived + 1, (kill_step, survived)
  for name, values in reference["history"].items():
    np.testing.assert_array_equal(resumed[f"history/{name}"], values[survived:],
                                  err_msg=f"{name} (killed at {kill_step})")
  for name, value in ref_params.items():
    np.testing.assert_array_equal(resumed[f"params/{name}"], value, err_msg=name)

  # The same workdir with a different data stream is refused, naming the key.
  changed = train_child.config()
  changed.train.num_steps = 10
  changed.train.seed = 1
  from genret_jax.train import trainer
  with pytest.raises(ConfigError, match=r"config\.train\.seed: is 1 but the checkpoint"):
    trainer.train(changed, workdir, mixture_name=train_tasks.register(),
                  vocab_size=train_tasks.VOCAB_SIZE)


def _tiny_state(value: float) -> TrainState:
  return TrainState(step=np.int32(value), params={"w": np.full((2, 3), value, np.float32)},
                    opt_state={"mu": np.zeros(3, np.float32)},
                    rng=np.array([0, int(value)], np.uint32))


def _abstract():
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                     sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])),
      _tiny_state(0))


@pytest.mark.parametrize("mode,kept", [("min", [2, 4]), ("max", [4])])
def test_keeps_latest_and_best(tmp_path, mode, kept):
  cfg = train_tasks.config(keep_checkpoints=1, keep_best=1, best_mode=mode).train
  ckpt = checkpoints.Checkpointer(str(tmp_path), cfg)
  try:
    for step, loss in zip((1, 2, 3, 4), (3.0, 1.0, 2.0, 4.0)):
      ckpt.save(step, _tiny_state(step), {"batches_consumed": step},
                metrics={"eval_loss": loss})
    ckpt.wait()
    assert ckpt.all_steps() == kept
    state, position = ckpt.restore(kept[0], _abstract())
    assert position == {"batches_consumed": kept[0]}
    np.testing.assert_array_equal(state.params["w"], np.full((2, 3), kept[0], np.float32))
    assert int(state.step) == kept[0] and state.rng.tolist() == [0, kept[0]]
  finally:
    ckpt.close()


def test_checkpoint_config_errors(tmp_path):
  with pytest.raises(ConfigError, match="train.keep_checkpoints"):
    checkpoints.Checkpointer(str(tmp_path), train_tasks.config(keep_checkpoints=0).train)
  with pytest.raises(ConfigError, match="train.best_mode"):
    checkpoints.Checkpointer(str(tmp_path), train_tasks.config(best_mode="lowest").train)


def test_input_position_mismatch_names_the_key():
  saved = {"batches_consumed": 4, "batch_size": 8, "input_shards": 1, "seed": 0,
           "mixture": "joint", "pack": True}
  checkpoints.check_input_position(saved, {**saved, "batches_consumed": 0}, "d")
  with pytest.raises(ConfigError, match=r"config\.train\.batch_size: is 16 .* with 8"):
    checkpoints.check_input_position(saved, {**saved, "batch_size": 16}, "d")
  with pytest.raises(ConfigError, match=r"config\.tasks\.mixture"):
    checkpoints.check_input_position(saved, {**saved, "mixture": "rec_only"}, "d")
