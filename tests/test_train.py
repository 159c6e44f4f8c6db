"""Trainer: loss, schedules, config errors, 1 device vs a 2x4 mesh, gradient
accumulation, the NaN guard, evaluation and the input pipeline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import train_tasks
from genret_jax.errors import ConfigError, GenRetError
from genret_jax.model import network, partitioning
from genret_jax.train import checkpoints, input_pipeline, losses, metrics_log, optim
from genret_jax.train import trainer
from genret_jax.train import state as state_lib

train_tasks.use_compilation_cache()
TASK = train_tasks.register()


def _model():
  """The tiny T5 (4 heads, so heads split over a 4-way 'model' axis)."""
  return network.Transformer(network.t5_config("tiny", train_tasks.VOCAB_SIZE))


# ---------------------------------------------------------------- loss, schedule


def test_cross_entropy_sums_match_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 5)).astype(np.float32)
  targets = np.array([[1, 4, 0], [2, 2, 3]], np.int32)
  weights = np.array([[1, 1, 0], [1, 0, 1]], np.float32)
  sums = losses.cross_entropy_sums(jnp.asarray(logits), targets, weights, z_loss=1e-2)
  log_z = np.log(np.exp(logits).sum(-1))
  nll = log_z - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(sums.cross_entropy, (nll * weights).sum(), rtol=1e-5)
  np.testing.assert_allclose(sums.z_loss, (1e-2 * log_z ** 2 * weights).sum(), rtol=1e-5)
  assert float(sums.weight) == 4.0
  correct = (logits.argmax(-1) == targets) * weights
  assert float(sums.correct) == correct.sum()


def test_first_argmax_is_jnp_argmax_ties_included():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(3, 4, 7)).astype(np.float32)
  logits[0, 0, [2, 5]] = 9.0            # a tie: the first maximum wins
  logits[1, 2, :] = 0.0                 # all equal: index 0
  logits[2, 3, 6] = np.inf
  got = np.asarray(losses.first_argmax(jnp.asarray(logits)))
  np.testing.assert_array_equal(got, np.asarray(jnp.argmax(jnp.asarray(logits), -1)))
  assert got[0, 0] == 2 and got[1, 2] == 0 and got[2, 3] == 6


def test_label_smoothing_is_zero_at_the_smoothed_target():
  vocab, smoothing = 6, 0.1
  q = np.full((1, 1, vocab), smoothing / (vocab - 1), np.float32)
  q[0, 0, 2] = 1 - smoothing
  sums = losses.cross_entropy_sums(jnp.log(jnp.asarray(q)), np.array([[2]], np.int32),
                                   np.ones((1, 1)), label_smoothing=smoothing)
  assert abs(float(sums.cross_entropy)) < 1e-5


@pytest.mark.parametrize("kind,expected", [
    ("constant", [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ("rsqrt", [0.25, 0.5, 0.75, 1.0] + [(4 / s) ** 0.5 for s in (5, 6, 7, 8)]),
    ("cosine", [0.25, 0.5, 0.75, 1.0] + [0.5 * (1 + np.cos(np.pi * k / 4)) for k in (1, 2, 3, 4)]),
])
def test_schedules(kind, expected):
  cfg = train_tasks.config(schedule=kind, warmup_steps=4, num_steps=8, learning_rate=2.0).train
  schedule = optim.learning_rate_schedule(cfg)
  got = [float(schedule(s)) for s in range(8)]
  np.testing.assert_allclose(got, 2.0 * np.asarray(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("overrides,key", [
    ({"optimizer": "sgd"}, "train.optimizer"),
    ({"schedule": "linear"}, "train.schedule"),
    ({"learning_rate": 0.0}, "train.learning_rate"),
    ({"batch_size": 12}, "train.batch_size"),          # 12 rows over 8 data devices
    ({"grad_accum_steps": 3}, "train.grad_accum_steps"),
    ({"grad_accum_steps": 2}, "train.batch_size"),     # 4-row micro-batches over 8 devices
    ({"keep_best": 1}, "train.keep_best"),
    ({"log_every": 0}, "train.log_every"),
    ({"z_loss": -1.0}, "train.z_loss"),
])
def test_config_errors_name_the_key(overrides, key):
  config = train_tasks.config(**overrides)
  mesh = partitioning.make_mesh(config.mesh)
  with pytest.raises(ConfigError) as e:
    trainer.validate(config, mesh)
  assert e.value.key == key and str(e.value).startswith(f"config.{key}:")


def test_bad_optimizer_raises_before_any_work(tmp_path):
  config = train_tasks.config(optimizer="sgd")
  with pytest.raises(ConfigError, match="train.optimizer"):
    trainer.train_model(config, str(tmp_path), _model(), mixture_name=TASK)
  assert not (tmp_path / "checkpoints").exists()


def test_adafactor_state_shardings_follow_params():
  config = train_tasks.config(optimizer="adafactor")
  config.mesh.data, config.mesh.model = 2, 4
  mesh = partitioning.make_mesh(config.mesh)
  tx = optim.make_optimizer(config.train)
  abstract, shardings = state_lib.state_shardings(_model(), tx, mesh,
                                                  partitioning.LOGICAL_AXIS_RULES, 16, 8)
  emb = shardings.params["token_embedder"]["embedding"]
  assert tuple(emb.spec) == ("model", None)
  leaves = jax.tree_util.tree_leaves(abstract.opt_state)
  specs = [x.sharding.spec for x in leaves]
  # Factored second moments are replicated; unfactored ones follow the parameter.
  assert any(tuple(s) == () for s in specs) and any("model" in tuple(s) for s in specs)


# ---------------------------------------------------------------- sharded training


def _run(tmp_path, name, devices=None, model=None, **overrides):
  config = train_tasks.config(**overrides)
  if devices is not None and len(devices) == 1:
    config.mesh.data, config.mesh.model = 1, 1
  elif devices is None:
    config.mesh.data, config.mesh.model = 2, 4
  return trainer.train_model(config, str(tmp_path / name), model or _model(),
                             mixture_name=TASK, devices=devices)


@pytest.mark.slow
def test_one_device_and_2x4_mesh_give_the_same_steps(tmp_path):
  one = _run(tmp_path, "one", devices=jax.devices()[:1])
  mesh = _run(tmp_path, "mesh")
  assert one["first_step"] == 1 and one["last_step"] == 3
  np.testing.assert_allclose(one["history"]["loss"], mesh["history"]["loss"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(one["history"]["grad_norm"], mesh["history"]["grad_norm"],
                             rtol=1e-5)
  # Adam divides by sqrt(v): for near-zero gradients it magnifies reduction-order
  # differences, so parameters agree to a fraction of one update (lr 1e-3).
  leaves_one = jax.tree_util.tree_leaves(jax.device_get(one["state"].params))
  leaves_mesh = jax.tree_util.tree_leaves(jax.device_get(mesh["state"].params))
  for a, b in zip(leaves_one, leaves_mesh):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
  # The parameters really are sharded on the mesh.
  emb = mesh["state"].params["token_embedder"]["embedding"]
  assert emb.sharding.spec[0] == "model" and len(emb.sharding.device_set) == 8


@pytest.mark.slow
def test_gradient_accumulation_matches_the_full_batch(tmp_path):
  devices = jax.devices()[:1]
  model = network.Transformer(network.t5_config("tiny", train_tasks.VOCAB_SIZE,
                                                dropout_rate=0.0))
  full = _run(tmp_path, "full", devices=devices, model=model, num_steps=2)
  accum = _run(tmp_path, "accum", devices=devices, model=model, num_steps=2,
               grad_accum_steps=4)
  np.testing.assert_allclose(full["history"]["loss"], accum["history"]["loss"], rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(jax.device_get(full["state"].params)),
                  jax.tree_util.tree_leaves(jax.device_get(accum["state"].params))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nan_guard_stops_at_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  # A learning rate of 1e30 blows the parameters up after step 1, so the loss
  # of step 2 is not finite.
  config = train_tasks.config(num_steps=4, learning_rate=1e30, warmup_steps=0,
                              schedule="constant", grad_clip_norm=0.0, checkpoint_every=1)
  config.mesh.data, config.mesh.model = 1, 1
  with pytest.raises(metrics_log.NonFiniteLossError) as e:
    trainer.train_model(config, str(tmp_path), _model(), mixture_name=TASK,
                        devices=jax.devices()[:1])
  assert e.value.step == 2 and e.value.last_checkpoint == 1
  assert "at step 2" in str(e.value) and "last good checkpoint: step 1" in str(e.value)
  ckpt = checkpoints.Checkpointer(checkpoints.checkpoint_dir(str(tmp_path)), config.train)
  try:
    assert ckpt.all_steps() == [1]
  finally:
    ckpt.close()


def test_first_non_finite_picks_the_earliest_step():
  metrics = {"loss": np.array([1.0, 2.0, np.inf, np.nan]),
             "grad_norm": np.array([1.0, np.nan, 1.0, 1.0])}
  step, name, value = metrics_log.first_non_finite(metrics, first_step=11)
  assert (step, name) == (12, "grad_norm") and np.isnan(value)
  assert metrics_log.first_non_finite({"loss": np.ones(3)}, 1) is None


# ---------------------------------------------------------------- train + evaluate


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """40 steps of the config-built tiny T5 through the public `train`."""
  workdir = str(tmp_path_factory.mktemp("trained"))
  config = train_tasks.config(num_steps=40, learning_rate=3e-3, log_every=20, eval_every=20,
                              checkpoint_every=20)
  result = trainer.train(config, workdir, mixture_name=TASK, vocab_size=train_tasks.VOCAB_SIZE)
  return config, workdir, result


def test_train_loss_falls_and_writes_the_workdir(trained):
  config, workdir, result = trained
  assert result["first_step"] == 1 and result["last_step"] == 40
  assert result["history"]["loss"].shape == (40,)
  assert result["last_loss"] < result["first_loss"] - 0.5
  examples = result["history"]["examples"]              # packed rows hold several examples
  assert np.all(examples >= 8) and examples.mean() > 8.5
  ckpt = checkpoints.Checkpointer(result["checkpoint_dir"], config.train)
  try:
    assert ckpt.all_steps() == [20, 40]
  finally:
    ckpt.close()
  import tensorflow as tf
  events = tf.io.gfile.glob(f"{workdir}/tensorboard/train/events.out.tfevents.*")
  tags = set()
  for event_file in events:
    for record in tf.compat.v1.train.summary_iterator(event_file):
      tags.update(v.tag for v in record.summary.value)
  assert {"loss", "learning_rate", "examples_per_sec", "tokens_per_sec"} <= tags
  assert tf.io.gfile.glob(f"{workdir}/tensorboard/eval/events.out.tfevents.*")


def test_evaluate_matches_a_direct_computation(trained):
  config, workdir, result = trained
  metrics = trainer.evaluate(config, workdir, task_or_mixture=TASK,
                             vocab_size=train_tasks.VOCAB_SIZE)
  assert metrics["step"] == 40
  assert metrics["eval_examples"] == train_tasks.NUM_EXAMPLES["validation"]
  # Reference: all validation examples through the model in one call, numpy loss.
  tokens, lengths, targets = train_tasks.examples("validation")
  n, t = len(tokens), targets.shape[1] + 1  # target tokens with EOS
  enc = np.zeros((n, 16), np.int32)
  dec_tgt = np.zeros((n, 8), np.int32)
  for i, (tok, length, tgt) in enumerate(zip(tokens, lengths, targets)):
    enc[i, :length + 1] = np.append(tok[:length], 1)
    dec_tgt[i, :t] = np.append(tgt, 1)
  dec_in = np.concatenate([np.zeros((n, 1), np.int32), dec_tgt[:, :-1]], axis=1)
  model = trainer.build_model(config, train_tasks.VOCAB_SIZE)
  logits = np.asarray(model.apply({"params": jax.device_get(result["state"].params)}, enc,
                                  dec_in, dec_tgt, enable_dropout=False), np.float64)[:, :t]
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, dec_tgt[:, :t, None], -1).sum()
  right = logits.argmax(-1) == dec_tgt[:, :t]
  total_nll, total_correct, total_tokens, exact = nll, right.sum(), n * t, right.all(1).sum()
  np.testing.assert_allclose(metrics["eval_loss"], total_nll / total_tokens, rtol=1e-4)
  np.testing.assert_allclose(metrics["token_accuracy"], total_correct / total_tokens, rtol=1e-5)
  np.testing.assert_allclose(metrics["sequence_accuracy"], exact / 20, rtol=1e-5)
  # The same numbers were logged by the periodic evaluation at step 40.
  np.testing.assert_allclose(result["eval"]["eval_loss"], metrics["eval_loss"], rtol=1e-6)


def test_finished_run_resumes_to_nothing(trained):
  config, workdir, _ = trained
  again = trainer.train(config, workdir, mixture_name=TASK, vocab_size=train_tasks.VOCAB_SIZE)
  assert again["resumed_from"] == 40 and again["first_loss"] is None
  assert trainer.summarize(again).startswith("training already complete at step 40; best "
                                             "eval_loss ")


# ---------------------------------------------------------------- input pipeline


def test_global_batches_do_not_depend_on_the_process_layout():
  """Shards 0 and 1 read separately equal the 2-shard batch one host reads."""
  lengths = {"inputs": 16, "targets": 8}
  mesh = partitioning.make_mesh(train_tasks.config().mesh)
  sharding = partitioning.data_sharding(mesh)
  assert input_pipeline.local_shards(sharding, 8, 2) == [0, 1]
  both = input_pipeline.train_batches(TASK, lengths, split="train", seed=3, batch_size=8,
                                      shards=2, sharding=sharding, pack=True, start_step=0)
  first = [next(both) for _ in range(3)]  # resuming = skipping: tests/test_checkpoint.py
  for k in (0, 1):
    ds = input_pipeline.shard_dataset(TASK, lengths, split="train", shard=k, shards=2, rows=4,
                                      seed=3, pack=True, repeat=True, drop_remainder=True)
    for step, part in zip(range(3), ds.as_numpy_iterator()):
      for key, value in part.items():
        np.testing.assert_array_equal(first[step][key][4 * k:4 * k + 4], value)


def test_input_shards_must_divide_the_batch():
  with pytest.raises(ConfigError, match="train.input_shards"):
    input_pipeline.num_input_shards(3, 8)


def test_build_model_reads_the_compute_dtype():
  config = train_tasks.config()
  config.model.dtype = "bfloat16"
  model = trainer.build_model(config, train_tasks.VOCAB_SIZE)
  assert model.config.dtype == jnp.bfloat16 and model.config.vocab_size == 128
  config.model.dtype = "float16"
  with pytest.raises(ConfigError, match="model.dtype"):
    trainer.build_model(config, train_tasks.VOCAB_SIZE)


def test_input_errors():
  lengths = {"inputs": 16, "targets": 8}
  sharding = partitioning.data_sharding(partitioning.make_mesh(train_tasks.config().mesh))
  with pytest.raises(GenRetError, match="'no_such_mixture' is not registered"):
    input_pipeline.shard_dataset("no_such_mixture", lengths, split="train", shard=0, shards=1,
                                 rows=8, seed=0, pack=True, repeat=True, drop_remainder=True)
  empty = input_pipeline.train_batches(TASK, lengths, split="empty", seed=0, batch_size=8,
                                       shards=1, sharding=sharding, pack=True, start_step=5)
  with pytest.raises(GenRetError, match="input ended at step 5: a shard of 1 yields no full"):
    next(empty)
  with pytest.raises(GenRetError, match="split 'empty' has no examples to evaluate"):
    input_pipeline.eval_batches(TASK, lengths, split="empty", batch_size=8, shards=1,
                                sharding=sharding, max_batches=0)


def test_eval_batches_pad_the_last_batch_with_zero_rows():
  lengths = {"inputs": 16, "targets": 8}
  sharding = partitioning.data_sharding(partitioning.make_mesh(train_tasks.config().mesh))
  batches = input_pipeline.eval_batches(TASK, lengths, split="validation", batch_size=8,
                                        shards=2, sharding=sharding, max_batches=0)
  # 20 examples in 2 shards of 10, 4 rows per shard and batch: 3 batches.
  assert len(batches) == 3
  weights = np.stack([b["decoder_loss_weights"] for b in batches])   # [3, 8, 8]
  rows_with_target = weights.sum(-1) > 0
  assert rows_with_target.sum() == 20
  np.testing.assert_array_equal(rows_with_target[2], [1, 1, 0, 0, 1, 1, 0, 0])


def test_evaluate_without_a_checkpoint_fails(tmp_path):
  with pytest.raises(GenRetError, match="no checkpoint in .*train first"):
    trainer.evaluate(train_tasks.config(), str(tmp_path), task_or_mixture=TASK,
                     vocab_size=train_tasks.VOCAB_SIZE)


def test_hf_checkpoint_init_grows_the_vocabulary(tmp_path):
  transformers = pytest.importorskip("transformers")
  hf = transformers.T5ForConditionalGeneration(transformers.T5Config(
      vocab_size=150, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
      feed_forward_proj="gated-gelu", tie_word_embeddings=False))
  hf.save_pretrained(str(tmp_path))
  config = train_tasks.config()
  config.model.hf_checkpoint = str(tmp_path)
  model, params = trainer.model_and_init(config, vocab_size=300)
  assert model.config.vocab_size == 384 and model.config.emb_dim == 32
  emb = params["token_embedder"]["embedding"]
  assert emb.shape == (384, 32)
  np.testing.assert_array_equal(emb[:150], hf.shared.weight.detach().numpy())
  # New rows (the checkpoint's padding and our appended tokens) start on the scale of the
  # trained rows: per-dimension mean and std of rows [0, 150).
  known = hf.shared.weight.detach().numpy()
  assert abs(emb[150:].std() - known.std()) < 0.3 * known.std()
  assert params["decoder"]["logits_dense"]["kernel"].shape == (32, 384)


# ---------------------------------------------------------------- validation, early stopping


def test_validation_history_ranks_and_stops(tmp_path):
  from genret_jax.train import early_stopping  # pylint: disable=g-import-not-at-top
  h = early_stopping.ValidationHistory(str(tmp_path), "val_r", "max", patience=2, resumed_from=0)
  for step, v in ((10, 0.2), (20, 0.5), (30, 0.5), (40, 0.4)):
    h.add(step, {"val_r": v, "other": 1.0})
    assert h.should_stop() == (step == 40)        # 30 ties 20: not better
  assert h.best()["step"] == 20 and h.best(steps=[10, 30, 40])["step"] == 30
  h.save()
  assert early_stopping.best_step(str(tmp_path), [30, 40]) == 30
  resumed = early_stopping.ValidationHistory(str(tmp_path), "val_r", "max", 2, resumed_from=20)
  assert [e["step"] for e in resumed.evals] == [10, 20]      # later ones are redone
  assert early_stopping.ValidationHistory(str(tmp_path), "eval_loss", "min", 2, 40).evals == []
  with pytest.raises(ConfigError, match="config.train.best_metric: 'val_r' is not one of"):
    h.add(50, {"eval_loss": 1.0})
  never = early_stopping.ValidationHistory(str(tmp_path / "x"), "val_r", "max", 0, 0)
  for step in range(1, 6):
    never.add(step, {"val_r": 1.0 / step})
  assert not never.should_stop()
  slow = early_stopping.ValidationHistory(str(tmp_path / "z"), "val_r", "max", 2, 0,
                                          min_delta=0.01)
  for step, v in ((10, 0.5), (20, 0.505), (30, 0.509), (40, 0.52)):
    slow.add(step, {"val_r": v})
    assert slow.should_stop() == (step == 30)     # +0.005, +0.009: below min_delta
  assert slow.best()["step"] == 40
  late = early_stopping.ValidationHistory(str(tmp_path / "y"), "val_r", "max", 1, 0,
                                          min_steps=30)
  for step, v in ((10, 0.5), (20, 0.1), (30, 0.1)):
    late.add(step, {"val_r": v})
    assert late.should_stop() == (step == 30)     # not before min_steps


def test_early_stopping_keeps_the_best_checkpoint_and_a_rerun_trains_no_further(tmp_path):
  """A validator whose metric peaks at the 2nd evaluation: training stops after
  `patience` more, the best checkpoint survives and is the one restored."""
  config = train_tasks.config(num_steps=60, learning_rate=3e-3, log_every=10, eval_every=10,
                              checkpoint_every=10, keep_checkpoints=1, keep_best=1,
                              best_metric="val_r", best_mode="max", patience=2, min_steps=0)
  scores = iter([0.3, 0.9, 0.5, 0.4, 0.8, 0.95])
  seen = []

  def validate_fn(model):
    del model
    def validate(params):
      seen.append(float(jax.tree_util.tree_leaves(params)[0].sum()))
      return {"val_r": next(scores)}
    return validate
  workdir = str(tmp_path)
  result = trainer.train(config, workdir, mixture_name=TASK, vocab_size=train_tasks.VOCAB_SIZE,
                         validate_fn=validate_fn)
  assert result["stopped_early"] and result["last_step"] == 40 and len(seen) == 4
  assert result["best"] == {"step": 20, "val_r": 0.9}
  ckpt = checkpoints.Checkpointer(result["checkpoint_dir"], config.train)
  try:
    assert ckpt.all_steps() == [20, 40]          # latest 1 + best 1
  finally:
    ckpt.close()
  assert trainer.selected_step(config, workdir) == 20
  _, _, step = trainer.restore_params(config, workdir, train_tasks.VOCAB_SIZE)
  assert step == 20
  again = trainer.train(config, workdir, mixture_name=TASK, vocab_size=train_tasks.VOCAB_SIZE,
                        validate_fn=validate_fn)
  assert again["first_loss"] is None and len(seen) == 4
  assert trainer.summarize(again) == ("training already complete at step 40; best val_r "
                                      "0.9000 at step 20 (stopped early)")
