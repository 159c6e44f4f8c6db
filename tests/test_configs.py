"""Every config file builds, resolves at every scale and validates; job-key errors name the key."""

import glob
import os

import ml_collections
import pytest

from genret_jax import config as config_lib
from genret_jax.errors import ConfigError
from genret_jax.pipeline import common, tables
from tests.conftest import REPO

CONFIG_FILES = sorted(os.path.relpath(p, REPO) for p in
                      glob.glob(str(REPO / "configs" / "**" / "*.py"), recursive=True))


def _load(rel: str) -> ml_collections.ConfigDict:
  return config_lib.load_sibling(str(REPO / "x"), rel).get_config()


def test_all_config_files_listed():
  assert set(CONFIG_FILES) >= {
      "configs/joint.py", "configs/rec.py", "configs/search.py", "configs/gensar.py",
      "configs/tiger.py", "configs/paper/penha.py", "configs/paper/sweep_s1.py",
      "configs/paper/sweep_s2.py", "configs/paper/sweep_s3.py", "configs/paper/cap.py",
      "configs/paper/gensar.py", "configs/paper/tiger.py", "configs/sweeps/recipe.py"}


@pytest.mark.parametrize("rel", CONFIG_FILES)
@pytest.mark.parametrize("scale", config_lib.SCALE_NAMES)
def test_config_resolves(rel, scale):
  c = _load(rel)
  c.scale = scale
  r = config_lib.resolve(c)
  assert r.is_locked
  entries = config_lib.model_entries(r)
  assert entries or r.models == "none"          # none: a job of baselines alone
  assert all(config_lib.model_config(r, e)[1].tasks.mixture for e in entries)
  if r.table.kind == "table":
    labels = {common.display_name(config_lib.parse_model(e)[0]) for e in entries}
    variants = tables.parse_variants(r.table.variants)
    names = {f"{m} {v}".strip() if v not in ("", "base") else m for m in labels
             for v, _ in variants}
    assert set(config_lib.split_list(r.table.compare)) <= names, rel
  if scale == "smoke":
    assert r.train.num_steps == 12 and r.train.batch_size == 16
  if scale == "cpu":   # SCALES['cpu'] is the defaults: only the file's own cpu overrides apply
    want = ml_collections.ConfigDict(c.to_dict())
    for item in filter(None, (i.strip() for i in str(c.scale_overrides.cpu).split(";"))):
      key, value = item.split("=", 1)
      config_lib.set_dotted(want, key.strip(), value.strip(), "scale_overrides.cpu")
    assert r.to_dict() == want.to_dict()


def test_scale_keeps_explicit_values():
  c = _load("configs/joint.py")
  c.scale = "smoke"
  c.train.num_steps = 7
  r = config_lib.resolve(c)
  assert r.train.num_steps == 7                 # set by the user: kept
  assert r.data.simulator.num_items == 160      # at its cpu default: smoke size
  c.scale = "paper"
  r = config_lib.resolve(c)
  assert (r.model.size, r.epochs, r.train.batch_size, r.decode.beam_size) == ("base", 5.0, 128, 30)
  g = _load("configs/gensar.py")
  g.scale = "paper"
  assert config_lib.resolve(g).model.size == "small"   # scale_overrides.paper
  assert r.train.num_steps == 7


@pytest.mark.parametrize("rel", ["configs/tiger.py", "configs/paper/tiger.py"])
@pytest.mark.parametrize("scale", config_lib.SCALE_NAMES)
def test_tiger_uses_the_published_network_at_every_scale(rel, scale):
  from genret_jax.model import builder  # pylint: disable=g-import-not-at-top
  c = _load(rel)
  c.scale = scale
  cfg = builder.t5_config_from_block(config_lib.resolve(c).model, 1000)
  # Rajput et al. 2023 (../shared/REFERENCE.md): 4 + 4 layers, d_model 128, 6 x 64, MLP 1024.
  assert (cfg.num_encoder_layers, cfg.num_decoder_layers, cfg.emb_dim, cfg.num_heads,
          cfg.head_dim, cfg.mlp_dim, cfg.dropout_rate) == (4, 4, 128, 6, 64, 1024, 0.1)


def test_joint_runs_three_models_and_baselines():
  c = config_lib.resolve(_load("configs/joint.py"))
  labels = [config_lib.model_config(c, e)[0] for e in config_lib.model_entries(c)]
  assert [common.display_name(x) for x in labels] == ["Gen_R", "Gen_S", "Gen_R+S"]
  assert config_lib.split_list(c.baselines) == ["pop", "bm25", "sasrec"]


def test_models_none_leaves_the_baselines_alone():
  c = config_lib.resolve(_load("configs/paper/sasrec.py"))
  assert config_lib.model_entries(c) == [] and c.baselines == "pop,sasrec"
  assert (c.ids.sasrec.patience, c.ids.sasrec.epochs, c.eval.max_queries) == (5, 200, 0)
  c = config_lib.get_base_config()
  assert config_lib.model_entries(c) == ["joint"]          # '' = the mixture's one model


def test_parse_model_and_overrides():
  assert config_lib.parse_model("joint") == ("joint", "joint", [])
  assert config_lib.parse_model("nq:gensar:tasks.rates.next_query=0:train.num_steps=5") == (
      "nq", "gensar", [("tasks.rates.next_query", "0"), ("train.num_steps", "5")])
  c = config_lib.get_base_config()
  label, m = config_lib.model_config(c, "nq:gensar:tasks.rates.next_query=0:train.num_steps=5")
  assert (label, m.tasks.mixture, m.tasks.rates.next_query, m.train.num_steps) == (
      "nq", "gensar", 0.0, 5)
  assert m.is_locked and c.tasks.mixture == "joint"


def test_parse_variants():
  assert tables.parse_variants("") == [("", [])]
  assert tables.parse_variants("base=,c5=models=joint;tasks.cap_per_item=5") == [
      ("base", []), ("c5", [("models", "joint"), ("tasks.cap_per_item", "5")])]
  with pytest.raises(ConfigError, match="table.variants"):
    tables.parse_variants("x=novalue")


@pytest.mark.parametrize("key,value,match", [
    ("scale", "huge", "config.scale"),
    ("models", "rec_only,bogus", "config.models"),
    ("models", "joint,joint", "config.models.*duplicate"),
    ("models", "x:joint:train.nope=1", "config.models"),
    ("models", "x:joint:train.num_steps=ten", "config.models"),
    ("models", "x:joint:train.num_steps", "config.models"),
    ("baselines", "pop,bert4rec", "config.baselines"),
    ("analyses", "h3", "config.analyses"),
    ("epochs", -1.0, "config.epochs"),
    ("table.kind", "grid", "config.table.kind"),
    ("scale_overrides.cpu", "model.size", "config.scale_overrides.cpu"),
    ("scale_overrides.cpu", "model.nope=1", "config.scale_overrides.cpu"),
])
def test_bad_job_keys(key, value, match):
  c = _load("configs/joint.py")
  node = c
  *head, last = key.split(".")
  for p in head:
    node = node[p]
  node[last] = value
  with pytest.raises(ConfigError, match=match):
    config_lib.resolve(c)


def test_sweep_needs_knob_and_unknown_dataset():
  c = _load("configs/paper/sweep_s1.py")
  c.table.knob_values = ""
  with pytest.raises(ConfigError, match="config.table.knob"):
    config_lib.resolve(c)
  c = _load("configs/paper/penha.py")
  with pytest.raises(ConfigError, match="config.table.datasets"):
    tables.dataset_config(c, "netflix")
  c.table.data_root = "/nonexistent"
  with pytest.raises(ConfigError, match="config.table.data_root"):
    tables.dataset_config(c, "ml-latest-small")
