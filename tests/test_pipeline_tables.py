"""Paper tables, sweeps and the semantic-ID configs at scale=smoke, through the CLI
(tests/pipeline_cli.py)."""

import os

import pytest

from tests.pipeline_cli import config as _config, read_json as _json, run_cli as _cli


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
