"""The main job end to end at scale=smoke, through the CLI: results, baselines, analyses,
plots, reruns, tables.

Each job is `python -m genret_jax.main` in a subprocess with ONE CPU device: a
smoke job's steps are tiny, so on 8 fake devices (the rest of the suite's
setting) SPMD partitioning doubles its compile and step time for nothing this
file tests. Multi-device jobs are tested by tests/test_launch_multiprocess.py
(1 x 4 and 2 x 2 devices).
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from genret_jax import config as config_lib
from tests import train_tasks
from tests.conftest import REPO, set_keys

CACHE_ENV = train_tasks.use_compilation_cache()


def _config(rel: str, **overrides):
  c = config_lib.load_sibling(str(REPO / "x"), rel).get_config()
  c.scale = "smoke"
  return config_lib.resolve(set_keys(c, **overrides))


def _cli(workdir, rel: str, mode: str = "all", check: bool = True, **overrides):
  """Runs the main job at scale=smoke on 1 CPU device: (process, seconds)."""
  env = {**os.environ, **CACHE_ENV, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "",
         "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  args = [sys.executable, "-m", "genret_jax.main", f"--config={rel}", "--config.scale=smoke",
          f"--workdir={workdir}", f"--mode={mode}",
          *(f"--config.{k}={v}" for k, v in overrides.items())]
  t0 = time.time()
  proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  if check:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc, time.time() - t0


def _json(path):
  with open(path) as f:
    return json.load(f)


# The tests that read the default job run on one xdist worker, so it runs once.
DEFAULT_JOB_GROUP = pytest.mark.xdist_group("pipeline_default_job")


@pytest.fixture(scope="module")
def default_job(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("joint"))
  # A seeded subset of the test queries (eval.max_queries), shared by every model.
  overrides = {"eval.max_queries": 30}
  proc, seconds = _cli(workdir, "configs/joint.py", **overrides)
  job = {"results": _json(os.path.join(workdir, "results.json")),
         "analysis": _json(os.path.join(workdir, "analysis.json"))["value"]}
  return _config("configs/joint.py", **overrides), overrides, workdir, job, seconds


@pytest.mark.slow
@DEFAULT_JOB_GROUP
def test_default_job_results(default_job):
  config, _, workdir, job, _ = default_job
  results = job["results"]
  tasks = {m: sorted(t) for m, t in results.items()}
  assert tasks == {"Gen_R": ["rec"], "Gen_S": ["search"], "Gen_R+S": ["rec", "search"],
                   "Pop_R": ["rec", "search"], "Pop_S": ["rec", "search"],
                   "BM25": ["search"], "SASRec": ["rec"]}
  ks = tuple(config.eval.ks)
  for model, per_task in results.items():
    for task, m in per_task.items():
      recalls = [m[f"recall@{k}"] for k in ks]
      assert all(0.0 <= r <= 1.0 for r in recalls), (model, task)
      assert recalls == sorted(recalls), (model, task)          # recall@k grows with k
      assert all(m[f"ndcg@{k}"] <= m[f"recall@{k}"] + 1e-9 for k in ks)
  for model in ("Gen_R", "Gen_S", "Gen_R+S"):
    for task in results[model]:
      assert results[model][task]["invalid_id_rate"] == 0.0     # constrained decoding
  md = open(os.path.join(workdir, "results.md")).read()
  assert "| Gen_R+S | rec |" in md and "| Gen_R+S | search |" in md
  assert "| SASRec | rec |" in md and "## H1" in md and "## H2" in md
  for png in ("h1_rec.png", "h1_search.png", "h2_tsne.png"):
    with open(os.path.join(workdir, "plots", png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  analysis = job["analysis"]
  assert sorted(analysis["h1"]["rec"]["models"]) == ["Gen_R", "Gen_R+S"]
  assert sorted(analysis["h1"]["search"]["models"]) == ["Gen_R+S", "Gen_S"]
  assert sorted(analysis["h2"]["models"]) == ["Gen_R", "Gen_R+S", "Gen_S"]
  # Predictions saved for H1 are the decoded ranked lists: recall@1 recomputed from them.
  z = np.load(os.path.join(workdir, "models", "joint", "predictions_rec.npz"))
  assert z["items"].shape == (len(z["targets"]), max(ks))
  assert np.mean(z["items"][:, 0] == z["targets"]) == pytest.approx(
      results["Gen_R+S"]["rec"]["recall@1"])


@pytest.mark.slow
@DEFAULT_JOB_GROUP
def test_max_queries_subset_is_shared_by_models_and_baselines(default_job):
  from genret_jax.data import prepared
  from genret_jax.data.splits import TEST
  from genret_jax.decoding import config as decoding_config
  config, _, workdir, job, _ = default_job
  ds = prepared.load(os.path.join(workdir, "prepared"))
  for task, behaviour in (("rec", 0), ("search", 1)):
    idx = np.flatnonzero((ds.split == TEST) & (ds.events.behaviour == behaviour))
    want = ds.events.item[idx[decoding_config.query_subset(idx.size, config.eval)]]
    z = np.load(os.path.join(workdir, "models", "joint", f"predictions_{task}.npz"))
    np.testing.assert_array_equal(z["targets"], want)   # same queries, same order
    assert job["results"]["Gen_R+S"][task]["num_queries"] == 30
    assert job["results"]["Gen_R+S"][task]["num_test_queries"] == idx.size > 30
    # Pop_R's recall@1 on exactly those queries.
    counts = np.bincount(ds.events.item[(ds.split == 0) & (ds.events.behaviour == 0)],
                         minlength=ds.catalog.num_items)
    top = counts == counts.max()
    hits = top[want] / top.sum()          # tie-expected recall@1
    assert job["results"]["Pop_R"][task]["recall@1"] == pytest.approx(hits.mean())


@pytest.mark.slow
@DEFAULT_JOB_GROUP
def test_rerun_reuses_every_step(default_job):
  _, overrides, workdir, job, first = default_job
  proc, seconds = _cli(workdir, "configs/joint.py", **overrides)
  for what in ("reusing prepared dataset", "ids: reusing", "eval rec_only: reusing",
               "eval joint: reusing", "baselines: reusing", "analyze: reusing"):
    assert what in proc.stdout, what
  assert _json(os.path.join(workdir, "results.json")) == job["results"]
  assert seconds < first / 2, (seconds, first)


@pytest.mark.slow
@DEFAULT_JOB_GROUP
def test_report_mode_rewrites_from_caches(default_job):
  _, overrides, workdir, _, _ = default_job
  md = os.path.join(workdir, "results.md")
  before = open(md).read()
  os.remove(md)
  proc, _ = _cli(workdir, "configs/joint.py", mode="report", **overrides)
  assert open(md).read() == before
  assert "eval joint: reusing" in proc.stdout


def test_eval_without_training_is_an_error(tmp_path):
  overrides = {"baselines": "", "analyses": ""}
  for mode in ("prepare", "ids"):
    _cli(tmp_path, "configs/rec.py", mode=mode, **overrides)
  proc, _ = _cli(tmp_path, "configs/rec.py", mode="eval", check=False, **overrides)
  assert proc.returncode == 1 and "error:" in proc.stderr and "no checkpoint" in proc.stderr


@pytest.mark.slow
def test_paper_table_over_seeds(tmp_path):
  # One generative row (Gen_R) marked against Pop_R over 2 seeds: the table's
  # machinery (per-seed jobs, mean +- std, paired t-test) is the same for any rows.
  _cli(tmp_path, "configs/paper/penha.py", **{
      "table.datasets": "simulated", "table.seeds": 2, "baselines": "pop",
      "models": "rec_only", "table.metrics": "rec/recall@30", "table.reference": "rec:Pop_R",
      "table.compare": "Gen_R"})
  summary = _json(tmp_path / "table.json")
  assert summary["models"] == ["Gen_R", "Pop_R", "Pop_S"]
  cell = summary["cells"]["Gen_R"]["simulated"]["rec/recall@30"]
  assert cell["n"] == 2 and cell["reference"] == "Pop_R" and "p_value" in cell
  seeds = [_json(tmp_path / "simulated" / "base" / f"seed{s}" / "results.json") for s in (0, 1)]
  assert cell["values"] == [r["Gen_R"]["rec"]["recall@30"] for r in seeds]
  md = open(tmp_path / "table.md").read()
  assert "Recall@30" in md and "| Gen_R |" in md


@pytest.mark.slow
def test_sweep_writes_plots(tmp_path):
  _cli(tmp_path, "configs/paper/sweep_s1.py", **{
      "table.knob_values": "0,2", "table.seeds": 1, "models": "rec_only"})
  blob = _json(tmp_path / "sweep_rec_recall@30.json")
  assert [p["x"] for p in blob["models"]["Gen_R"]] == [0.0, 2.0]
  with open(tmp_path / "sweep_rec_recall@30.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert not os.path.exists(tmp_path / "sweep_search_recall@30.png")   # no search row


@pytest.mark.slow
@pytest.mark.parametrize("rel,tasks", [("configs/gensar.py", ["rec", "search"]),
                                       ("configs/tiger.py", ["rec"])])
def test_semantic_id_configs_on_the_simulator(tmp_path, rel, tasks):
  # The pipeline, not the network size, is under test: configs/tiger.py's fixed
  # TIGER dims (checked in test_configs) give way to the tiny size here.
  tiny = {f"model.{k}": 0 for k in ("num_encoder_layers", "num_decoder_layers", "emb_dim",
                                     "num_heads", "head_dim", "mlp_dim")}
  overrides = {"data.source": "simulated", "data.path": "", "baselines": "", "analyses": "",
               "decode.beam_size": 10, "decode.num_groups": 10, **tiny}
  _cli(tmp_path, rel, **overrides)
  config = _config(rel, **overrides)
  results = _json(tmp_path / "results.json")
  name = "GenSAR" if "gensar" in rel else "Gen_R"
  assert sorted(results[name]) == tasks
  for m in results[name].values():
    if config.eval.protocol == "both":
      assert 0.0 <= m["sampled_hr@1"] <= m["sampled_hr@10"] <= 1.0
    assert 0.0 <= m[f"recall@{max(config.eval.ks)}"] <= 1.0
