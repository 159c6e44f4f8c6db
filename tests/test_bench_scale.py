"""genret_jax.bench.scale at a tiny size: every stage measured, decoded items in the catalog."""

import json
import subprocess
import sys

import numpy as np
import pytest

STAGES = {"prepare", "ids", "trie", "decode"}
ITEMS, EVENTS, QUERIES = 2000, 20000, 64


def _run(tmp_path, *extra: str) -> tuple[dict, str]:
  out = tmp_path / "scale.json"
  cmd = [sys.executable, "-m", "genret_jax.bench.scale", f"--num_items={ITEMS}",
         f"--num_events={EVENTS}", f"--queries={QUERIES}", "--semantic_dim=32",
         "--rq_iterations=5", f"--workdir={tmp_path / 'work'}", f"--out={out}", *extra]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return json.loads(out.read_text()), proc.stdout


def _check(res: dict, stdout: str) -> None:
  assert set(res["stages"]) == STAGES
  for name, rec in res["stages"].items():
    assert rec["wall_s"] > 0 and rec["cpu_s"] > 0, name
    assert rec["peak_rss_mb"] > 0 and rec["rss_end_mb"] > 0, name
    assert rec["peak_rss_mb"] >= max(rec["rss_start_mb"], rec["rss_end_mb"]), name
    assert rec["parts"] and rec["output"], name
    for part, p in rec["parts"].items():
      assert p["wall_s"] >= 0 and p["cpu_s"] >= 0 and p["peak_rss_mb"] > 0, (name, part)
      assert p["peak_rss_mb"] <= rec["peak_rss_mb"], (name, part)
  counts = res["stages"]["prepare"]["output"]["counts"]
  assert counts["items"] == ITEMS and counts["rec_events"] + counts["search_events"] == EVENTS
  for scheme in ("atomic", "rq_kmeans"):
    assert res["stages"]["trie"]["output"][scheme]["table_mb"] > 0
  assert res["stages"]["ids"]["output"]["rq_kmeans"]["collision_rate_after_dedup"] == 0
  dec = res["stages"]["decode"]["output"]
  assert dec["queries"] == QUERIES and dec["queries_per_s"] > 0 and dec["all_items_in_catalog"]
  items = np.asarray(res["stages"]["decode"]["items"])
  assert items.shape == (QUERIES, 30)
  valid = items >= 0
  assert valid.any(axis=1).all()
  assert (items[valid] < ITEMS).all()
  for row in items:                      # distinct items per query, ranked first
    kept = row[row >= 0]
    assert len(set(kept.tolist())) == len(kept) and (row[:len(kept)] >= 0).all()
  assert "| stage | part | wall s | CPU s | peak RSS MB |" in stdout
  m = res["machine"]               # genret_jax.bench.machine's block, as every bench
  assert {"cpu_model", "cores_available", "cpu_flags", "load_average_before",
          "load_average_after", "others_cpu"} <= set(m)
  assert {"jax", "jaxlib"} <= set(m["versions"]) and res["busy"] == m["busy"]


@pytest.mark.slow
def test_scale_bench_tiny_one_subprocess_per_stage(tmp_path):
  # The default mode (each stage in its own process); --in_process runs the
  # same stage functions in this process and only skips the subprocess wrapper.
  res, stdout = _run(tmp_path)
  assert not res["config"]["in_process"]
  _check(res, stdout)
  for rec in res["stages"].values():     # each stage's own process peak
    assert rec["process_peak_rss_mb"] > 0
    assert rec["peak_rss_mb"] >= rec["process_peak_rss_mb"]


def test_decode_refuses_a_million_token_vocabulary():
  from genret_jax.bench import scale
  scale.check_logits_memory(3000, (256, 256, 256, 40), 64, 30)     # 0.02 GiB
  with pytest.raises(RuntimeError, match=r"984,700 tokens.*\[64 x 30, vocab\] take 7\.0 GiB"):
    scale.check_logits_memory(984_700, (256, 256, 256, 984_700), 64, 30)
