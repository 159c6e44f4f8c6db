"""bench.decode's reporting: its bf16 ratios, and --strict_load on a machine that got busy
(the benchmark itself is run by hand, docs/benchmarks.md)."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO

# bench.decode's main with each catalog's measurements replaced (no compilation); the
# load average is 0.5 when the run starts and 5 after it (/proc/stat unread, so the
# load after decides).
_FAKE_RUN = """
import os
loads = iter([(0.5, 0.5, 0.5)] + [(5.0, 4.0, 3.0)] * 10)
os.getloadavg = lambda: next(loads)
from absl import app
from genret_jax.bench import decode, machine
machine.cpu_seconds_busy = lambda: None

def fake_bench_catalog(n, module, params, x, vocab):
  seconds = dict(ours=1.0, ours_unc=0.5, ours_bf16=0.8, py_trie=10.0, hf_trie=8.0,
                 hf_trie_bf16=6.0, hf_unc=4.0, hf_unc_bf16=3.0)
  return {**{f"{m}_batch_seconds": s for m, s in seconds.items()},
          "items": n, "table_mb": 1.0, "build_seconds": 0.1, "levels": ["DenseLevel"] * 4,
          "ours_gflop": 1.0, "step_ours_ms": 1.0, "step_py_trie_ms": 5.0,
          "constraint_ours_ms": 0.1, "constraint_py_trie_ms": 2.0}

decode.bench_catalog = fake_bench_catalog
app.run(decode.main)
"""


def test_strict_load_refuses_a_run_that_got_busy_after_writing_its_json(tmp_path):
  out = tmp_path / "decode.json"
  r = subprocess.run([sys.executable, "-c", _FAKE_RUN, "--items=100,200", "--vocab_size=128",
                      "--batch_size=2", "--input_length=4", "--strict_load", f"--out={out}"],
                     cwd=REPO, capture_output=True, text=True,
                     env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
  assert r.returncode != 0, r.stdout[-2000:] + r.stderr[-2000:]
  assert "load average after the run 5.00 > 1.0: ratios are not results" in r.stderr
  assert "--strict_load: no result reported" in r.stderr
  assert "| items | method |" not in r.stdout          # no table: not a result
  res = json.loads(out.read_text())
  assert res["busy"] is True and res["ratios_valid"] is False
  assert res["machine"]["load_average_before"] == [0.5, 0.5, 0.5]
  assert res["machine"]["load_average_after"] == [5.0, 4.0, 3.0]
  assert res["speedup_vs_hf_trie"] == 8.0 and res["speedup_vs_hf_trie_bf16"] == 6.0
  assert res["speedup_bf16_vs_hf_trie_bf16"] == 7.5
