"""genret_jax.bench.matmul: GEMM GFLOP/s of XLA and torch in float32 and bfloat16."""

import json
import subprocess
import sys

from tests.conftest import REPO


def test_matmul_bench_reports_every_side_and_its_ratios(tmp_path):
  out = tmp_path / "mm.json"
  proc = subprocess.run([sys.executable, "-m", "genret_jax.bench.matmul", "--sizes=64,96",
                         "--repeats=1", "--rounds=1", f"--out={out}", "--max_load=1e9"],
                        cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
  r = json.loads(out.read_text())
  assert set(r["gflops"]) == {"64", "96"}
  for n, g in r["gflops"].items():
    assert set(g) == {"xla_f32", "xla_bf16", "xla_bf16_f32acc", "torch_f32", "torch_bf16"}
    assert all(v > 0 for v in g.values())
    assert r["torch_bf16_vs_xla_f32"][n] == round(g["torch_bf16"] / g["xla_f32"], 2)
    assert r["xla_bf16_f32acc_vs_xla_f32"][n] == round(g["xla_bf16_f32acc"] / g["xla_f32"], 2)
  assert r["busy"] is False and r["ratios_valid"] is True
  assert set(r["machine"]["cpu_flags"]) == {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
  assert "| 96 |" in proc.stdout and "WARNING" not in proc.stdout
