"""The main job end to end at scale=smoke, through the CLI (tests/pipeline_cli.py):
results, baselines, analyses, plots, reruns, report mode, a missing checkpoint."""

import os

import numpy as np
import pytest

from tests.pipeline_cli import config as _config, read_json as _json, run_cli as _cli


@pytest.fixture(scope="module")
def default_job(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("joint"))
  # A seeded subset of the test queries (eval.max_queries), shared by every model.
  overrides = {"eval.max_queries": 30}
  _, seconds = _cli(workdir, "configs/joint.py", **overrides)
  job = {"results": _json(os.path.join(workdir, "results.json")),
         "analysis": _json(os.path.join(workdir, "analysis.json"))["value"]}
  return _config("configs/joint.py", **overrides), overrides, workdir, job, seconds


@pytest.mark.slow
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
      results["Gen_R+S"]["rec"]["recall@1"], rel=1e-5)


@pytest.mark.slow
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
    assert job["results"]["Pop_R"][task]["recall@1"] == pytest.approx(hits.mean(), rel=1e-5)


@pytest.mark.slow
def test_rerun_reuses_every_step(default_job):
  _, overrides, workdir, job, first = default_job
  proc, seconds = _cli(workdir, "configs/joint.py", **overrides)
  for what in ("reusing prepared dataset", "ids: reusing", "eval rec_only: reusing",
               "eval joint: reusing", "baselines: reusing", "analyze: reusing"):
    assert what in proc.stdout, what
  assert _json(os.path.join(workdir, "results.json")) == job["results"]
  assert seconds < first / 2, (seconds, first)


@pytest.mark.slow
def test_report_mode_rewrites_from_caches(default_job):
  _, overrides, workdir, _, _ = default_job
  md = os.path.join(workdir, "results.md")
  before = open(md).read()
  os.remove(md)
  proc, _ = _cli(workdir, "configs/joint.py", mode="report", **overrides)
  assert open(md).read() == before
  assert "eval joint: reusing" in proc.stdout


def test_eval_without_training_is_an_error(tmp_path):
  from genret_jax.pipeline import steps  # pylint: disable=g-import-not-at-top
  overrides = {"baselines": "", "analyses": ""}
  config = _config("configs/rec.py", **overrides)     # prepared and ids in-process:
  steps.run_prepare(config, str(tmp_path))             # the CLI's start-up is paid once
  steps.run_ids(config, str(tmp_path))
  proc, _ = _cli(tmp_path, "configs/rec.py", mode="eval", check=False, **overrides)
  assert proc.returncode == 1 and "error:" in proc.stderr and "no checkpoint" in proc.stderr
