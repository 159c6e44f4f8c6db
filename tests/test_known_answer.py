"""Known-answer data through the main job with the DEFAULT recipe (scale=cpu, no
training overrides): a model that reads its input solves it, one that collapsed to
popularity scores ~1/200. These are the tests that would have caught the collapse.

The default model, Gen_R+S (one T5 for both tasks), on 200 items and 400 users: it
trains the default minimum of 300 steps (~2-3 min on 2 cores), validated and tested
on 200 seeded queries per task instead of all 400. The task-specific
models on 1,000 users are measured in docs/results.md."""

import pytest

from tests import known_answer
from tests.pipeline_cli import read_json, run_cli


@pytest.fixture(scope="module")
def job(tmp_path_factory):
  data = tmp_path_factory.mktemp("known_answer_data")
  known_answer.write(str(data), num_users=400)
  workdir = tmp_path_factory.mktemp("known_answer_job")
  proc, _ = run_cli(workdir, "configs/joint.py", scale="cpu", **{
      "data.source": "generic", "data.path": str(data), "models": "joint",
      "validation.max_queries": 200, "eval.max_queries": 200,
      "baselines": "pop", "analyses": ""})
  return workdir, proc


@pytest.mark.slow
def test_default_recipe_learns_the_successor_and_the_item_names(job):
  workdir, proc = job
  results = read_json(workdir / "results.json")
  for task in ("rec", "search"):
    assert results["Gen_R+S"][task]["recall@1"] >= 0.8, results["Gen_R+S"][task]
    # 200 queries' targets cover ~126 distinct items; a collapsed model has <= 5.
    assert results["Gen_R+S"][task]["top1_distinct_items"] >= 100
  assert "collapsed" not in (workdir / "results.md").read_text()
  assert "best val_ndcg@10" in proc.stdout        # the validation-picked checkpoint


def test_the_known_answer_data_is_what_it_says(tmp_path):
  counts = known_answer.write(str(tmp_path), num_items=10, num_users=3, rec_per_user=(4, 4),
                              search_per_user=2)
  assert counts == {"rec": 12, "search": 6}
  import json  # pylint: disable=g-import-not-at-top
  items = [json.loads(l) for l in open(tmp_path / "items.jsonl")]
  names = {r["item_id"]: r["title"] for r in items}
  assert len(set(names.values())) == 10
  events = [json.loads(l) for l in open(tmp_path / "events.jsonl")]
  for user in ("u0", "u1", "u2"):
    rec = [int(e["item_id"][1:]) for e in events if e["user_id"] == user
           and e["behaviour"] == "rec"]
    assert [(b - a) % 10 for a, b in zip(rec, rec[1:])] == [1, 1, 1]
  assert all(e["query"] == names[e["item_id"]] for e in events if e["behaviour"] == "search")
