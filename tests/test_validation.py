"""Epochs -> steps and the validation retrieval of genret_jax.pipeline.validation."""

import math

import jax
import ml_collections
import numpy as np
import pytest

from genret_jax import config as config_lib
from genret_jax.errors import ConfigError
from genret_jax.evaluation import generative as generative_eval
from genret_jax.pipeline import common, steps, validation
from genret_jax.train import trainer
from tests import pipeline_cli


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("validation"))
  config = pipeline_cli.config("configs/joint.py", **{"jax_cache_dir": ""})
  steps.run_prepare(config, workdir)
  c = steps.Context(config, workdir)
  c.set_ids(steps.run_ids(config, workdir))
  return c


def _model_config(ctx, mixture, **keys):
  _, m = config_lib.model_config(ctx.config, mixture)
  m = ml_collections.ConfigDict(m.to_dict())
  for key, value in keys.items():
    config_lib.set_dotted(m, key, str(value), "test")
  m.lock()
  return m


def test_epochs_set_steps_from_the_packed_mixture_and_validation_every_epoch(ctx):
  m = _model_config(ctx, "joint", epochs=3, **{"validation.every_epochs": 0.5,
                                               "validation.min_every_steps": 0,
                                               "train.min_steps": 0})
  reg = ctx.registered(m)
  examples = reg["example_counts"]["rec"] + reg["example_counts"]["search"]
  per_row = validation.examples_per_row(reg["mixture"], m)
  assert 1.0 < per_row <= 8.0                      # packing: several examples per row
  per_epoch = examples / (m.train.batch_size * per_row)
  s = validation.schedule(ctx, m)
  assert s.train.num_steps == math.ceil(3 * per_epoch)
  assert s.train.eval_every == s.train.checkpoint_every == math.ceil(0.5 * per_epoch)
  assert (s.train.best_metric, s.train.best_mode, s.train.keep_best) == (
      "val_ndcg@10", "max", 1)
  off = validation.schedule(ctx, _model_config(ctx, "joint", epochs=3, **{
      "validation.every_epochs": 0, "train.min_steps": 0}))
  assert off.train.num_steps == s.train.num_steps and off.train.eval_every == 0
  floors = validation.schedule(ctx, _model_config(ctx, "joint", epochs=3, **{
      "validation.every_epochs": 0.5, "validation.min_every_steps": 1000,
      "train.min_steps": 5000}))                 # small data: enough steps, few validations
  assert (floors.train.num_steps, floors.train.eval_every) == (5000, 1000)
  fixed = _model_config(ctx, "joint", epochs=0)
  assert validation.schedule(ctx, fixed) is fixed  # epochs 0: train.num_steps as set


def test_the_validator_decodes_validation_events_with_the_test_decoder(ctx):
  m = _model_config(ctx, "joint", **{"validation.max_queries": 7})
  assert validation.validated_tasks(ctx, m) == ["rec", "search"]
  model, _ = trainer.model_and_init(m, ctx.registered(m)["vocabulary"].vocab_size)
  from genret_jax.train import optim, state as state_lib  # pylint: disable=g-import-not-at-top
  from genret_jax.model import partitioning  # pylint: disable=g-import-not-at-top
  mesh = partitioning.make_mesh(m.mesh)
  lengths = trainer.feature_lengths(m)
  tx = optim.make_optimizer(m.train)
  _, shardings = state_lib.state_shardings(model, tx, mesh, partitioning.LOGICAL_AXIS_RULES,
                                           lengths["inputs"], lengths["targets"])
  state = state_lib.init_train_state(model, tx, 0, shardings, lengths["inputs"],
                                     lengths["targets"], None)
  out = validation.make_validator(ctx, m)(model)(state.params)
  assert set(out) == {f"val_{t}_{k}" for t in ("rec", "search")
                      for k in ("recall@10", "ndcg@10")} | {"val_ndcg@10"}
  assert out["val_ndcg@10"] == pytest.approx(
      (out["val_rec_ndcg@10"] + out["val_search_ndcg@10"]) / 2)
  # The same numbers as decoding those validation events directly.
  reg = ctx.registered(m)
  arrays = validation.eval_arrays(reg["eval_tasks"]["rec"], m, "validation")
  from genret_jax.decoding import config as decoding_config  # pylint: disable=g-import-not-at-top
  sub = ml_collections.ConfigDict(m.eval.to_dict())
  sub.max_queries = 7
  keep = decoding_config.query_subset(len(arrays["target_item"]), sub)
  trie = validation.full_trie(ctx.ids.rec, reg["vocabulary"], "", m, mesh)
  direct, _, items = generative_eval.decode_full(model, state.params, arrays["inputs"][keep],
                                                 arrays["target_item"][keep], trie,
                                                 **validation.decode_kwargs(m, mesh))
  assert out["val_rec_recall@10"] == direct["recall@10"] and items.shape == (7, 30)
  assert out["val_rec_ndcg@10"] == direct["ndcg@10"]
  assert np.isfinite(jax.device_get(out["val_ndcg@10"]))


@pytest.mark.parametrize("key,value", [("validation.every_epochs", -1.0),
                                       ("validation.max_queries", -2),
                                       ("validation.min_every_steps", -1)])
def test_bad_validation_keys_name_the_key(key, value):
  with pytest.raises(ConfigError, match=f"config.{key}: must be >= 0"):
    pipeline_cli.config("configs/joint.py", **{key: value})
