"""Report writer: exact paper table, t-test markers and their edge cases, JSON, sweeps."""

import json

import numpy as np
import pytest
from scipy import stats

from genret_jax import report
from genret_jax.report import HIGHER, LOWER, paired_ttest

RESULTS = {
    "Pop_R": {"ml": {"rec/recall@30": [0.1, 0.1, 0.1], "search/recall@30": [0.05, 0.05, 0.05]}},
    "BM25": {"ml": {"search/recall@30": [0.2, 0.2, 0.2]}},
    "Gen_R": {"ml": {"rec/recall@30": [0.20, 0.22, 0.21]},
              "beauty": {"rec/recall@30": [0.05, 0.06, 0.07]}},
    "Gen_S": {"ml": {"search/recall@30": [0.30, 0.31, 0.29]}},
    "Gen_R+S": {"ml": {"rec/recall@30": [0.25, 0.26, 0.27],
                       "search/recall@30": [0.30, 0.32, 0.28]},
                "beauty": {"rec/recall@30": [0.03, 0.035, 0.04]}},
}
REF = {"rec": "Gen_R", "search": "Gen_S"}

TABLE = """**Penha et al. 2024**

| model | ml rec R@30 | ml search R@30 | beauty rec R@30 |
|---|---:|---:|---:|
| Pop_R | 0.1000 ± 0.0000 | 0.0500 ± 0.0000 | – |
| BM25 | – | 0.2000 ± 0.0000 | – |
| Gen_R | 0.2100 ± 0.0100 | – | **0.0600 ± 0.0100** |
| Gen_S | – | **0.3000 ± 0.0100** | – |
| Gen_R+S | **0.2600 ± 0.0100**† | **0.3000 ± 0.0200** | 0.0350 ± 0.0050‡ |

Mean ± std (ddof=1) over 3 seed(s); best mean in bold. † / ‡: significantly higher / lower \
than the task-specific reference (two-sided paired t-test, paired by seed, p < 0.05).
Compared: Gen_R+S vs Gen_R; Gen_R+S vs Gen_S.
"""


def test_markdown_table_exact(tmp_path):
  md, js = report.write_paper_table(RESULTS, str(tmp_path / "out" / "penha"),
                                    title="Penha et al. 2024", reference=REF,
                                    compare=["Gen_R+S"])
  with open(md) as f:
    assert f.read() == TABLE
  with open(js) as f:
    summary = json.load(f)
  cell = summary["cells"]["Gen_R+S"]["ml"]["rec/recall@30"]
  want = stats.ttest_rel([0.25, 0.26, 0.27], [0.20, 0.22, 0.21])
  assert cell["p_value"] == pytest.approx(want.pvalue)
  assert cell["t"] == pytest.approx(want.statistic)
  assert cell["reference"] == "Gen_R" and cell["marker"] == HIGHER
  assert cell["mean_diff"] == pytest.approx(0.05)
  assert cell["values"] == [0.25, 0.26, 0.27] and cell["n"] == 3
  assert summary["cells"]["Gen_R+S"]["beauty"]["rec/recall@30"]["marker"] == LOWER
  # ml search: 0.30/0.32/0.28 vs 0.30/0.31/0.29 -> diffs 0, .01, -.01: p = 1.
  s = summary["cells"]["Gen_R+S"]["ml"]["search/recall@30"]
  assert s["marker"] == "" and s["p_value"] == pytest.approx(1.0)
  assert "marker" not in summary["cells"]["Gen_R"]["ml"]["rec/recall@30"]
  assert summary["columns"] == [["ml", "rec/recall@30"], ["ml", "search/recall@30"],
                                ["beauty", "rec/recall@30"]]


def test_single_seed_cells_and_labels():
  s = report.summarize({"A": {"d": {"ndcg@10": [0.5]}}, "B": {"d": {"ndcg@10": [0.25]}}},
                       reference="B", compare=["A"])
  text = report.markdown_table(s, digits=2, labels={"ndcg@10": "NDCG@10"})
  assert text.splitlines()[:4] == ["| model | d NDCG@10 |", "|---|---:|",
                                   "| A | **0.50** |", "| B | 0.25 |"]
  assert s["cells"]["A"]["d"]["ndcg@10"]["p_value"] is None        # n = 1: no test
  assert report.metric_label("hr@5") == "HR@5" and report.metric_label("mrr") == "MRR"
  assert report.metric_label("search/ndcg@10") == "search N@10"


def test_paired_ttest_matches_scipy_and_direction():
  a, b = [0.30, 0.31, 0.29, 0.32, 0.30], [0.25, 0.27, 0.26, 0.24, 0.25]
  t = paired_ttest(a, b)
  ref = stats.ttest_rel(a, b)
  assert (t.t, t.p_value) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
  assert t.significant and t.marker == HIGHER and t.n == 5
  assert paired_ttest(b, a).marker == LOWER
  # Not significant: noisy differences around zero.
  ns = paired_ttest([0.30, 0.20, 0.31, 0.19], [0.25, 0.26, 0.24, 0.25])
  assert ns.p_value > 0.05 and not ns.significant and ns.marker == ""


def test_paired_ttest_degenerate_cases_never_nan():
  same = paired_ttest([0.2, 0.2, 0.2], [0.2, 0.2, 0.2])
  assert (same.p_value, same.t, same.significant, same.marker) == (1.0, 0.0, False, "")
  shift = paired_ttest([0.5, 0.75, 1.0], [0.25, 0.5, 0.75])          # exact constant gap
  assert (shift.p_value, shift.t, shift.marker) == (0.0, None, HIGHER)
  one = paired_ttest([0.3], [0.1])
  assert (one.p_value, one.significant, one.marker) == (None, False, "")
  assert paired_ttest([], []).n == 0
  with pytest.raises(ValueError, match="2 values vs 3"):
    paired_ttest([1, 2], [1, 2, 3])
  with pytest.raises(ValueError, match="non-finite"):
    paired_ttest([1, np.nan], [1, 2])
  with pytest.raises(ValueError, match="alpha"):
    paired_ttest([1, 2], [1, 2], alpha=1.5)


def test_paired_by_queries():
  rng = np.random.default_rng(0)
  base = rng.random(200)
  per_query = {"J": {"d": {"r@1": [base + 0.05, base + 0.03]}},
               "T": {"d": {"r@1": [base, base + 0.01]}}}
  per_seed = {m: {"d": {"r@1": [float(np.mean(v)) for v in per_query[m]["d"]["r@1"]]}}
              for m in per_query}
  s = report.summarize(per_seed, reference="T", compare=["J"], paired="queries",
                       per_query=per_query)
  cell = s["cells"]["J"]["d"]["r@1"]
  assert cell["marker"] == HIGHER and cell["p_value"] == 0.0     # constant +0.035 per query
  assert cell["mean_diff"] == pytest.approx(0.035)
  assert "paired by query" in report.markdown_table(s)
  with pytest.raises(ValueError, match="per_query.*'T'.*missing"):
    report.summarize(per_seed, reference="T", compare=["J"], paired="queries",
                     per_query={"J": per_query["J"]})


@pytest.mark.parametrize("kwargs, msg", [
    (dict(paired="users"), "paired='users'"),
    (dict(paired="queries"), "needs per_query"),
    (dict(compare=["Gen_X"]), "'Gen_X' has no results"),
    (dict(reference={"rec": "Gen_R"}), "no reference results .*search"),
    (dict(per_seed={"A": {"d": {"m": []}}}), "non-empty list of finite"),
    (dict(per_seed={"A": {"d": {"m": [0.1, float("inf")]}}}), "non-empty list of finite"),
    (dict(per_seed={"A": [0.1]}), "must be {model"),
])
def test_summarize_errors(kwargs, msg):
  args = dict(per_seed=RESULTS, reference=REF, compare=["Gen_R+S"])
  if "per_seed" in kwargs:
    args.update(compare=[], reference="")
  args.update(kwargs)
  with pytest.raises(ValueError, match=msg):
    report.summarize(**args)


def test_seed_count_mismatch_is_an_error():
  with pytest.raises(ValueError, match="has 2 seeds .* 'B' has 3"):
    report.summarize({"A": {"d": {"m": [0.1, 0.2]}}, "B": {"d": {"m": [0.1, 0.2, 0.3]}}},
                     reference="B", compare=["A"])


def test_collect_seeds():
  seeds = [{"A": {"d": {"m": 0.1}}, "B": {"d": {"m": 0.3}}},
           {"A": {"d": {"m": 0.2}}, "B": {"d": {"m": 0.4}}}]
  assert report.collect_seeds(seeds) == {"A": {"d": {"m": [0.1, 0.2]}},
                                         "B": {"d": {"m": [0.3, 0.4]}}}
  with pytest.raises(ValueError, match="seed 1 and seed 0 differ at \\('B', 'd', 'm'\\)"):
    report.collect_seeds([seeds[0], {"A": {"d": {"m": 0.2}}}])
  with pytest.raises(ValueError, match="no seeds"):
    report.collect_seeds([])


def test_write_sweep(tmp_path):
  png, js = report.write_sweep({"Gen_R": {0.5: [0.2, 0.22], 0.0: [0.1, 0.12]},
                                "Gen_R+S": {0.0: [0.15], 0.5: [0.25]}},
                               str(tmp_path / "s1"), knob="alignment", metric="recall@30")
  with open(png, "rb") as f:
    assert f.read(4) == b"\x89PNG"
  with open(js) as f:
    out = json.load(f)
  assert [p["x"] for p in out["models"]["Gen_R"]] == [0.0, 0.5]
  assert out["models"]["Gen_R"][1]["mean"] == pytest.approx(0.21)
  assert out["models"]["Gen_R"][1]["std"] == pytest.approx(np.std([0.2, 0.22], ddof=1))
  assert out["models"]["Gen_R+S"][0] == {"x": 0.0, "mean": 0.15, "std": 0.0, "values": [0.15]}
