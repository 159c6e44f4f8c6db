r"""RQ-KMeans build time and peak memory on random embeddings.

  python -m genret_jax.bench.ids [--num=1000000 --dim=64 --levels=3 --codes=256
                                 --iterations=10 --impls=jax,jax_chunk65536,jax_unchunked,sklearn]

Each implementation runs in a fresh subprocess (so its peak memory is its
own) on the same float32[num, dim] standard-normal data (seed 0):

  jax            genret_jax.ids.rq_kmeans (chunked jitted Lloyd, chunk 16,384)
  jax_chunkC     the same with chunk C (e.g. jax_chunk65536)
  jax_unchunked  the same with one chunk = all rows ([N, K] distances at once)
  sklearn        scikit-learn KMeans(n_init=1, k-means++, lloyd) per level

Memory is the process's peak resident set size (resource.getrusage
ru_maxrss), reported in total and above the RSS measured just before the
build (after imports and data creation). Time is wall-clock of the whole
build including compilation (with --repeat, also a second, compiled build).
Prints a Markdown table and writes JSON, with the machine block of
genret_jax.bench.machine (CPU, cores, flags, versions, load average before and
after, CPU used by other processes). A busy run (load average before, or other
processes' CPU during it, above --max_load) says `"busy": true` and prints
`WARNING: ...: timings are not results (other jobs were running)`;
--strict_load exits non-zero instead.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from absl import app, flags

from genret_jax.bench import machine

_NUM = flags.DEFINE_integer("num", 1_000_000, "Number of embeddings.")
_DIM = flags.DEFINE_integer("dim", 64, "Embedding dimension.")
_LEVELS = flags.DEFINE_integer("levels", 3, "RQ levels.")
_CODES = flags.DEFINE_integer("codes", 256, "Codes per level.")
_ITERS = flags.DEFINE_integer("iterations", 10, "Lloyd iterations per level (max).")
_REPEAT = flags.DEFINE_bool("repeat", False, "Time a second, already-compiled build too.")
_IMPLS = flags.DEFINE_list("impls", ["jax", "jax_chunk65536", "jax_unchunked", "sklearn"],
                           "Implementations.")
_JSON = flags.DEFINE_string("json_out", "bench_ids.json", "Where to write the results.")
_WORKER = flags.DEFINE_string("worker", "", "Internal: run one implementation and print JSON.")


def _rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def _current_rss_mb() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return float(line.split()[1]) / 1024.0
  return _rss_mb()


def _worker(impl: str) -> dict:
  # Imported in the worker subprocess: each implementation's peak RSS is its own.
  import numpy as np  # pylint: disable=g-import-not-at-top
  from genret_jax.ids import rq_kmeans, stats  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(0).standard_normal((_NUM.value, _DIM.value), dtype=np.float32)
  base = _current_rss_mb()

  def build():
    if impl.startswith("jax"):
      chunk = (x.shape[0] if impl == "jax_unchunked" else
               int(impl[len("jax_chunk"):]) if impl.startswith("jax_chunk") else 16384)
      res = rq_kmeans.rq_kmeans(x, _LEVELS.value, _CODES.value, seed=0,
                                iterations=_ITERS.value, chunk=chunk)
      return res.codes, res.recon_error[-1]
    # Only the sklearn worker loads scikit-learn (its RSS is metered).
    from sklearn.cluster import KMeans  # pylint: disable=g-import-not-at-top
    residual, codes = x.astype(np.float32), []
    for level in range(_LEVELS.value):
      km = KMeans(_CODES.value, n_init=1, max_iter=_ITERS.value, random_state=level,
                  algorithm="lloyd").fit(residual)
      codes.append(km.labels_)
      residual = residual - km.cluster_centers_[km.labels_].astype(np.float32)
    return np.stack(codes, 1), float(np.mean(np.sum(residual ** 2, 1)))

  t0 = time.perf_counter()
  codes, err = build()
  first = time.perf_counter() - t0
  peak = _rss_mb()
  second = float("nan")
  if _REPEAT.value:
    t0 = time.perf_counter()
    build()
    second = time.perf_counter() - t0
  return {"impl": impl, "seconds_first": round(first, 2), "seconds_second": round(second, 2),
          "peak_rss_mb": round(peak, 1), "peak_above_start_mb": round(peak - base, 1),
          "start_rss_mb": round(base, 1), "recon_error": round(float(err), 5),
          "collision_rate": round(stats.collision_rate(codes), 5)}


def main(argv) -> None:
  del argv
  if _WORKER.value:
    print("RESULT " + json.dumps(_worker(_WORKER.value)))
    return
  run = machine.Run.from_flags(also=("jax", "jaxlib", "scikit-learn"))   # the workers' imports
  args = [f"--num={_NUM.value}", f"--dim={_DIM.value}", f"--levels={_LEVELS.value}",
          f"--codes={_CODES.value}", f"--iterations={_ITERS.value}", f"--repeat={_REPEAT.value}"]
  rows = []
  for impl in _IMPLS.value:
    out = subprocess.run([sys.executable, "-m", "genret_jax.bench.ids", f"--worker={impl}"]
                         + args, capture_output=True, text=True, check=False)
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode or not line:
      rows.append({"impl": impl, "error": (out.stderr.strip().splitlines() or ["?"])[-1]})
    else:
      rows.append(json.loads(line[0][len("RESULT "):]))
    print(rows[-1], flush=True)
  setup = {"num": _NUM.value, "dim": _DIM.value, "levels": _LEVELS.value, "codes": _CODES.value,
           "iterations": _ITERS.value, "memory": "peak RSS (resource.getrusage ru_maxrss)"}
  print(f"\nRQ-KMeans on {_NUM.value:,} x {_DIM.value} random embeddings, {_LEVELS.value} "
        f"levels x {_CODES.value} codes, <= {_ITERS.value} Lloyd iterations per level\n")
  warnings = run.finish({"setup": setup, "results": rows}, ratios=False, path=_JSON.value)
  print("| implementation | build s (1st, incl. compile) | build s (2nd) | peak RSS MB "
        "| peak above start MB | MSE after last level | collision rate |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    if "error" in r:
      print(f"| {r['impl']} | failed: {r['error']} | | | | | |")
    else:
      print(f"| {r['impl']} | {r['seconds_first']} | {r['seconds_second']} | {r['peak_rss_mb']} "
            f"| {r['peak_above_start_mb']} | {r['recon_error']} | {r['collision_rate']} |")
  for line in warnings:
    print(line)


if __name__ == "__main__":
  app.run(main)
