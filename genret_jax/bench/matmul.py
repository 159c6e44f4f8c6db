r"""Matrix-multiply throughput on this CPU: XLA (jax) vs torch, float32 vs bfloat16.

  python -m genret_jax.bench.matmul [--sizes=512,1024,2048 --repeats=20 --rounds=3
                                    --out=/tmp/bench_matmul.json]

The question it answers (issue 18): can our matmuls reach the CPU's bf16 units
the way torch does? torch bf16 GEMMs go through oneDNN, which uses AMX tiles
(Intel Sapphire Rapids and later: `amx_bf16` in /proc/cpuinfo) or AVX-512
BF16 dot products (`avx512_bf16`, e.g. AMD Zen 4); XLA:CPU lowers a jnp.dot to
its own kernels. The machine block records which of those flags this CPU has.
`xla_bf16` is `a @ b` on bf16 arrays (bf16 result); `xla_bf16_f32acc` the same
product accumulated in float32 (`preferred_element_type`), the form
`genret_jax.model.layers.einsum` gives the model's matmuls under
`model.dtype=bfloat16`: on an AVX512-BF16 CPU XLA:CPU runs it at about twice
its f32 rate, and the bf16-result form at about half.

For each square size n, one jitted `a @ b` (jax) and `torch.matmul` (torch.no_grad)
per dtype, timed as the median over `rounds` rounds of `repeats` calls (after a
warm-up call); sides alternate within each round. GFLOP/s = 2 n^3 / seconds.
torch uses the cores this process may use (torch.set_num_threads), as XLA does.
A busy machine (genret_jax.bench.machine) marks the ratios as not results.
Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import statistics
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from genret_jax.bench import machine

_SIZES = flags.DEFINE_list("sizes", ["512", "1024", "2048"], "Square matrix sizes n.")
_REPEATS = flags.DEFINE_integer("repeats", 20, "Calls per timed round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds (sides alternate within each).")
_OUT = flags.DEFINE_string("out", "/tmp/bench_matmul.json", "JSON output path.")

SIDES = ("xla_f32", "xla_bf16", "xla_bf16_f32acc", "torch_f32", "torch_bf16")


def _jax_fn(n: int, dtype, accumulate=None):
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((n, n), np.float32), dtype)
  b = jnp.asarray(rng.standard_normal((n, n), np.float32), dtype)
  f = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=accumulate))
  f(a, b).block_until_ready()
  return lambda: f(a, b).block_until_ready()


def _torch_fn(n: int, dtype_name: str):
  # torch is optional (the `test` extra): imported for the peer only.
  import torch  # pylint: disable=g-import-not-at-top
  dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
  g = torch.Generator().manual_seed(0)
  a = torch.randn(n, n, generator=g).to(dtype)
  b = torch.randn(n, n, generator=g).to(dtype)

  def run():
    with torch.no_grad():
      torch.matmul(a, b)
  run()
  return run


def bench_size(n: int, repeats: int, rounds: int) -> dict[str, float]:
  """{side: GFLOP/s} for one size (median round)."""
  fns = {"xla_f32": _jax_fn(n, jnp.float32), "xla_bf16": _jax_fn(n, jnp.bfloat16),
         "xla_bf16_f32acc": _jax_fn(n, jnp.bfloat16, jnp.float32),
         "torch_f32": _torch_fn(n, "f32"), "torch_bf16": _torch_fn(n, "bf16")}
  seconds: dict[str, list[float]] = {s: [] for s in SIDES}
  for r in range(rounds):
    order = SIDES if r % 2 == 0 else SIDES[::-1]
    for side in order:
      t0 = time.perf_counter()
      for _ in range(repeats):
        fns[side]()
      seconds[side].append((time.perf_counter() - t0) / repeats)
  # 4 significant digits: a tiny matrix on a busy core must not round to 0 GFLOP/s.
  return {s: float(f"{2 * n ** 3 / statistics.median(v) / 1e9:.4g}") for s, v in seconds.items()}


def main(argv):
  del argv
  run = machine.Run.from_flags(also=("torch",))
  # torch is optional (the `test` extra).
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(machine.cores_available())
  results = {n: bench_size(int(n), _REPEATS.value, _ROUNDS.value) for n in _SIZES.value}
  report = {"gflops": results,
            "torch_bf16_vs_xla_f32": {n: round(r["torch_bf16"] / r["xla_f32"], 2)
                                      for n, r in results.items()},
            "xla_bf16_vs_xla_f32": {n: round(r["xla_bf16"] / r["xla_f32"], 2)
                                    for n, r in results.items()},
            "xla_bf16_f32acc_vs_xla_f32": {n: round(r["xla_bf16_f32acc"] / r["xla_f32"], 2)
                                           for n, r in results.items()},
            "repeats": _REPEATS.value, "rounds": _ROUNDS.value}
  lines = run.finish(report, ratios=True, path=_OUT.value)
  print("| n | " + " | ".join(f"{s} GFLOP/s" for s in SIDES)
        + " | torch bf16 / XLA f32 | XLA bf16 / XLA f32 | XLA bf16 f32-acc / XLA f32 |")
  print("|---:|" + "---:|" * (len(SIDES) + 3))
  for n, r in results.items():
    print(f"| {n} | " + " | ".join(f"{r[s]:.1f}" for s in SIDES)
          + f" | {report['torch_bf16_vs_xla_f32'][n]:.2f}x"
          f" | {report['xla_bf16_vs_xla_f32'][n]:.2f}x"
          f" | {report['xla_bf16_f32acc_vs_xla_f32'][n]:.2f}x |")
  m = report["machine"]
  print(f"{m['cpu_model']}; flags {m['cpu_flags']}; load before {m['load_average_before']}")
  for line in lines:
    print(line)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
