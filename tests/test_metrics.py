"""Ranking metrics on hand-computed cases (with duplicate-ID ties), results files."""

import json
import math

import numpy as np
import pytest

from genret_jax.decoding import config as decoding_config
from genret_jax.errors import ConfigError
from genret_jax.evaluation import metrics, results

KS = (1, 2, 3, 5)
L2 = math.log2


def _m(items, targets, ranks=None, ks=KS):
  return metrics.per_query_metrics(np.array(items), np.array(targets), ks,
                                   None if ranks is None else np.array(ranks))


def test_no_ties():
  m = _m([[5, 3, 9, 1], [4, 4, -1, -1], [1, 2, 3, 4]], [3, 4, 8])
  np.testing.assert_allclose(m["recall@1"], [0, 1, 0])
  np.testing.assert_allclose(m["hr@2"], [1, 1, 0])
  np.testing.assert_allclose(m["recall@5"], [1, 2, 0])   # an item listed twice counts twice
  np.testing.assert_allclose(m["ndcg@5"][0], 1 / L2(3))
  np.testing.assert_allclose(m["mrr"], [1 / 2, 1, 0])


def test_target_sharing_its_id_with_two_other_items():
  items, ranks = [[7, 2, 3, 8, 4]], [[0, 1, 1, 1, 2]]
  m = _m(items, [3], ranks)
  np.testing.assert_allclose([m[f"hr@{k}"][0] for k in KS], [0, 1 / 3, 2 / 3, 1])
  np.testing.assert_allclose([m[f"recall@{k}"][0] for k in KS], [0, 1 / 3, 2 / 3, 1])
  np.testing.assert_allclose(m["ndcg@2"], [1 / L2(3) / 3])
  np.testing.assert_allclose(m["ndcg@5"], [(1 / L2(3) + 1 / L2(4) + 1 / L2(5)) / 3])
  np.testing.assert_allclose(m["mrr"], [(1 / 2 + 1 / 3 + 1 / 4) / 3])
  # the same list without ties: the target is simply at position 2.
  plain = _m(items, [3])
  np.testing.assert_allclose([plain[f"hr@{k}"][0] for k in KS], [0, 0, 1, 1])
  np.testing.assert_allclose(plain["mrr"], [1 / 3])


def test_two_targets_in_one_tie_group():
  m = _m([[7, 2, 3, 8, 4]], [[2, 3]], [[0, 1, 1, 1, 2]])
  np.testing.assert_allclose(m["recall@2"], [1 / 3])
  np.testing.assert_allclose(m["hr@2"], [2 / 3])        # 1 - C(1,1)/C(3,1)
  np.testing.assert_allclose(m["hr@3"], [1.0])          # 1 - C(1,2)/C(3,2)
  np.testing.assert_allclose(m["ndcg@2"], [(2 / 3 / L2(3)) / (1 + 1 / L2(3))])
  np.testing.assert_allclose(m["mrr"], [2 / 3 * 1 / 2 + 1 / 3 * 1 / 3])
  np.testing.assert_allclose(m["recall@5"], [1.0])


def test_group_cut_by_k_after_a_hit_and_padding_targets():
  m = _m([[1, 2, 3, 4, -1]], [[1, 3, -1]], [[0, 1, 1, 1, -1]])
  np.testing.assert_allclose(m["hr@2"], [1.0])
  np.testing.assert_allclose(m["recall@2"], [(1 + 1 / 3) / 2])
  np.testing.assert_allclose(m["mrr"], [1.0])
  np.testing.assert_allclose(m["ndcg@1"], [1.0])


def test_means_and_errors():
  mean = metrics.ranking_metrics(np.array([[1, 2], [3, 4]]), np.array([2, 9]), (1, 2))
  assert mean == {"recall@1": 0.0, "hr@1": 0.0, "ndcg@1": 0.0, "recall@2": 0.5,
                  "hr@2": 0.5, "ndcg@2": 0.5 / L2(3), "mrr": 0.25}
  with pytest.raises(ValueError, match="must be"):
    _m([[1, 2]], [1, 2])
  with pytest.raises(ValueError, match="ranks shape"):
    _m([[1, 2]], [1], [[0]])
  with pytest.raises(ValueError, match="query 1 has no target"):
    _m([[1, 2], [1, 2]], [[1], [-1]])


def test_sample_negatives():
  pos = np.array([0, 5, 9, 5])
  c = metrics.sample_negatives(10, pos, 6, seed=0)
  assert c.shape == (4, 7) and c.dtype == np.int32
  np.testing.assert_array_equal(c[:, 0], pos)
  for row in c:
    assert len(set(row)) == 7 and set(row) <= set(range(10))
  np.testing.assert_array_equal(c, metrics.sample_negatives(10, pos, 6, seed=0))
  w = np.ones(10)
  w[[1, 2, 3]] = 0
  c = metrics.sample_negatives(10, pos, 5, seed=1, weights=w)
  assert not np.isin(c[:, 1:], [1, 2, 3]).any()
  with pytest.raises(ValueError, match="need more than 10 items"):
    metrics.sample_negatives(10, pos, 10, seed=0)


def test_write_results(tmp_path):
  res = {"joint": {"search": {"mrr": 0.25, "recall@10": np.float32(0.5)},
                   "rec": {"recall@10": 0.125, "hr@1": 0.0625}},
         "rec_only": {"rec": {"recall@10": 0.1}}}
  jpath, mpath = results.write_results(res, str(tmp_path / "w"))
  assert json.load(open(jpath)) == {"joint": {"search": {"mrr": 0.25, "recall@10": 0.5},
                                              "rec": {"recall@10": 0.125, "hr@1": 0.0625}},
                                    "rec_only": {"rec": {"recall@10": 0.1}}}
  assert open(mpath).read() == (                 # compact table, then every metric
      "| model | task | recall@10 | mrr |\n"
      "|---|---|---:|---:|\n"
      "| joint | search | 0.5000 | 0.2500 |\n"
      "| joint | rec | 0.1250 |  |\n"
      "| rec_only | rec | 0.1000 |  |\n"
      "\n### All metrics\n\n"
      "| model | task | recall@10 | hr@1 | mrr |\n"
      "|---|---|---:|---:|---:|\n"
      "| joint | search | 0.5000 |  | 0.2500 |\n"
      "| joint | rec | 0.1250 | 0.0625 |  |\n"
      "| rec_only | rec | 0.1000 |  |  |\n")
  only_compact = {"m": {"t": {"recall@10": 0.5, "ndcg@10": 0.25}}}
  assert results.results_markdown(only_compact) == (
      "| model | task | recall@10 | ndcg@10 |\n|---|---|---:|---:|\n| m | t | 0.5000 | 0.2500 |\n")
  with pytest.raises(ValueError, match=r"results\['m'\]\['t'\]\['x'\] = 'a' is not a number"):
    results.write_results({"m": {"t": {"x": "a"}}}, str(tmp_path / "bad"))
  with pytest.raises(ValueError, match=r"results\['m'\] must be"):
    results.write_results({"m": 1}, str(tmp_path / "bad"))
  with pytest.raises(ValueError, match=r"results\['m'\]\['t'\] must be"):
    results.write_results({"m": {"t": 2}}, str(tmp_path / "bad"))
  assert not (tmp_path / "bad" / "results.json").exists()


@pytest.mark.parametrize("block,key,value,message", [
    ("decode", "mode", "greedy", "is not one of"),
    ("decode", "beam_size", 0, "must be >= 1"),
    ("decode", "batch_size", 0, "must be >= 1"),
    ("decode", "dense_max_mb", -1.0, "must be >= 0"),
    ("decode", "num_groups", 7, "must divide decode.beam_size=30"),
    ("decode", "diversity_penalty", -0.5, "must be >= 0"),
    ("eval", "ks", (0, 5), "positive integers"),
    ("eval", "protocol", "half", "is not one of"),
    ("eval", "num_negatives", 0, "must be >= 1"),
    ("eval", "best_metric", "recall@7", "is not one of"),
])
def test_config_errors(block, key, value, message):
  dec, ev = decoding_config.default_config(), decoding_config.eval_config()
  decoding_config.validate(dec, ev)
  if key in ("num_groups", "diversity_penalty"):
    dec.mode = "diverse"
  (dec if block == "decode" else ev)[key] = value
  with pytest.raises(ConfigError, match=f"config.{block}.{key}: .*{message}"):
    decoding_config.validate(dec, ev)
