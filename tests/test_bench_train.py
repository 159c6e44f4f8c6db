"""bench.train's command line, its busy-machine reporting and its Hugging Face peers (the
benchmark itself is run by hand, docs/benchmarks.md)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from genret_jax.bench import peers
from genret_jax.model import network
from tests.conftest import REPO


@pytest.mark.parametrize("dims", ["emb_dim", "emb_dim=0", "width=128", "emb_dim=1e3"])
def test_bad_dims_are_a_usage_error_before_any_work(tmp_path, dims):
  out = tmp_path / "bench.json"
  r = subprocess.run([sys.executable, "-m", "genret_jax.bench.train", f"--dims={dims}",
                      "--skip_hf", f"--out={out}"], cwd=REPO, capture_output=True, text=True,
                     env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
  assert r.returncode != 0
  assert f"--dims entry '{dims}': want key=positive int" in r.stderr + r.stdout
  assert not out.exists()


# bench.train's main with each side's timing replaced (no compilation), under a faked
# load of 5 (cores in use and load average): the reporting, not the measuring.
_FAKE_RUN = """
import os
os.getloadavg = lambda: (5.0, 4.0, 3.0)
from absl import app
from genret_jax.bench import machine, train
machine.cpu_in_use = lambda seconds=1.0: 5.0

def fake_bench_size(size, batches, threads):
  side = lambda ms: {"step_ms": ms, "examples_per_sec": 1e3 / ms, "params": 10}
  return {"ours": side(1.0), "ours_bf16": side(2.0), "hf": side(4.0), "hf_bf16": side(3.0)}

train.bench_size = fake_bench_size
app.run(train.main)
"""


def test_a_busy_run_keeps_its_ratios_marked_invalid(tmp_path):
  out = tmp_path / "bench.json"
  r = subprocess.run([sys.executable, "-c", _FAKE_RUN, "--sizes=tiny", f"--out={out}"],
                     cwd=REPO, capture_output=True, text=True,
                     env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.loads(out.read_text())
  assert res["busy"] is True and res["ratios_valid"] is False
  assert res["speedup_vs_hf"] == {"tiny": 4.0} and res["speedup_vs_hf_bf16"] == {"tiny": 3.0}
  assert res["speedup_bf16_vs_hf_bf16"] == {"tiny": 1.5}
  m = res["machine"]
  assert m["load_average_before"] == [5.0, 4.0, 3.0] and m["busy"] is True
  assert {"cpu_model", "cpu_count", "cores_available", "cpu_flags", "versions",
          "load_average_after"} <= set(m) and "jax" in m["versions"]
  assert ("| tiny | 0.00M | 1.0 | 2.0 | 4.0 | 3.0 | 4.00x | 3.00x | 1.50x |"
          in r.stdout), r.stdout
  assert ("WARNING: 5.00 cores in use before the run > 1.0: ratios are not results (other "
          "jobs were running)" in r.stdout)


def test_the_hf_bf16_peer_trains_close_to_fp32():
  """The autocast peer starts from the fp32 peer's weights: on the same batches its
  losses are finite and within bf16 rounding of fp32's, but not identical."""
  pytest.importorskip("torch")
  t5 = network.t5_config("tiny", 128, dropout_rate=0.0)
  rng = np.random.default_rng(0)
  batches = [{"encoder_input_tokens": rng.integers(2, 128, (4, 8), dtype=np.int32),
              "decoder_target_tokens": rng.integers(2, 128, (4, 3), dtype=np.int32)}
             for _ in range(2)]
  fp32, bf16 = peers.HFTrain(t5), peers.HFTrain(t5, bf16=True)
  fp32.run(batches)
  bf16.run(batches)
  assert len(bf16.losses) == 2 and np.isfinite(bf16.losses).all()
  np.testing.assert_allclose(bf16.losses, fp32.losses, rtol=0.03)
  assert bf16.losses != fp32.losses       # autocast did run in bfloat16


class FakeSide:
  """A bench side that 'trains' in a set time: (1 + 3 * is_hf + is_bf16) ms a step,
  and records the process it lives in."""

  def __init__(self, size, *args, **kwargs):
    hf = bool(args) and isinstance(args[0], bool)      # hf_side(size, bf16, threads)
    bf16 = args[0] if hf else "dtype" in kwargs          # Ours(size, dtype=bfloat16)
    self.ms, self.pid, self.num_params = 1 + 3 * hf + bf16, os.getpid(), len(size)
    self.losses = [2.0, 1.0]

  def run(self, batches):
    return len(batches) * self.ms / 1e3


# bench.train's bench_size with FakeSide as every side, in a subprocess (importing
# bench.train here would define its flags twice beside bench.scale's in one worker).
_ISOLATED_RUN = """
import json, os
from absl import app
from genret_jax.bench import isolate, train
from tests.test_bench_train import FakeSide
pids = []

class Recording(isolate.Isolated):
  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    pids.append(self.get("pid"))

train.Ours = train.hf_side = FakeSide
isolate.Isolated = Recording

def main(argv):
  out = train.bench_size("tiny", train.random_batches(3), threads=1)
  print(json.dumps({"out": out, "pids": pids, "parent": os.getpid()}))

app.run(main)
"""


def test_bench_size_builds_each_side_in_its_own_process():
  r = subprocess.run([sys.executable, "-c", _ISOLATED_RUN, "--warmup=1", "--steps=2",
                      "--rounds=2"], cwd=REPO, capture_output=True, text=True,
                     env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.loads(r.stdout.strip().splitlines()[-1])
  out = res["out"]
  assert {k: round(v["step_ms"], 6) for k, v in out.items()} == {
      "ours": 1.0, "ours_bf16": 2.0, "hf": 4.0, "hf_bf16": 5.0}
  assert out["hf"]["first_loss"] == 2.0 and out["ours"]["params"] == 4
  assert len(set(res["pids"])) == 4 and res["parent"] not in res["pids"]
