r"""Training throughput of the input formats: prompt style x target length, real data.

  python -m genret_jax.bench.inputs --out=/tmp/inputs_bench.json

On the built-in simulator at cpu scale (the default job's data), for the rec
(Gen_R) and search (Gen_S) tasks, each variant trains the cpu-scale tiny T5 with
its real packed batches (128 input tokens, batch 64 rows): the full English
prompt with "; " between history elements and 8 target tokens (the recipe before
issue 14), the short task prefix with no separator and 16 target tokens (the
current default), and no prompt. Shorter inputs and
more target room put more examples in a packed row, so examples/s rises at the
same step time. Variants alternate in `--rounds` rounds of `--steps` steps after
`--warmup` untimed steps (compilation there); the median round is reported, with
the machine block of genret_jax.bench.machine (CPU, cores, flags, versions, load
average before and after). The "vs before" column is a ratio: a busy run (the rule is in
genret_jax.bench.machine) marks it `ratios_valid: false` and prints a WARNING line.
"""

from __future__ import annotations

import statistics
import tempfile
import time

from absl import app, flags
import jax

from genret_jax import config as config_lib
from genret_jax.bench import machine
from genret_jax.pipeline import common, steps
from genret_jax.train import input_pipeline, optim, state as state_lib, step as step_lib
from genret_jax.train import trainer

_OUT = flags.DEFINE_string("out", "/tmp/inputs_bench.json", "JSON output path.")
_WORKDIR = flags.DEFINE_string("bench_workdir", "", "Prepared-data folder ('' = a temp dir).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps per variant.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds; the median is reported.")

# name -> config overrides (dotted keys).
VARIANTS = {
    "full prompt, '; ', 8 targets (before)": {"tasks.prompt_style": "full",
                                              "tasks.history_separator": "; ",
                                              "tasks.max_target_length": 8},
    "short prompt, 16 targets (default)": {},
    "no prompt, 16 targets": {"tasks.prompt_style": "none"},
}
TASKS = ("rec_only", "search_only")


class Runner:
  """One variant x task: the real packed batches and our jitted train step."""

  def __init__(self, ctx: steps.Context, mixture: str, overrides: dict[str, str]):
    config = ctx.config.copy_and_resolve_references()
    for key, value in overrides.items():
      config_lib.set_dotted(config, key, str(value), "bench")
    _, m = config_lib.model_config(config, mixture)
    reg = ctx.registered(m)
    model = trainer.build_model(m, reg["vocabulary"].vocab_size)
    mesh, rules = trainer._mesh_and_rules(m)  # pylint: disable=protected-access
    lengths = trainer.feature_lengths(m)
    tx = optim.make_optimizer(m.train)
    _, shardings = state_lib.state_shardings(model, tx, mesh, rules, lengths["inputs"],
                                             lengths["targets"])
    self.state = state_lib.init_train_state(model, tx, 0, shardings, lengths["inputs"],
                                            lengths["targets"])
    self.step = step_lib.jit_train_step(
        step_lib.make_train_step(model, tx, optim.learning_rate_schedule(m.train), m.train),
        mesh, rules, shardings)
    self.sharding = step_lib.batch_sharding(mesh)
    self.batch_size = int(m.train.batch_size)
    self.batches = input_pipeline.train_batches(
        reg["mixture"], lengths, split="train", seed=0, batch_size=self.batch_size, shards=1,
        sharding=self.sharding, pack=True, start_step=0)

  def run(self, num_steps: int) -> tuple[float, int]:
    """(seconds, examples) for `num_steps` steps, batches prefetched first."""
    host = [next(self.batches) for _ in range(num_steps)]
    examples = sum(int(b["encoder_segment_ids"].max(axis=1).sum()) for b in host)
    start = time.perf_counter()
    metrics = None
    for batch in host:
      self.state, metrics = self.step(
          self.state, input_pipeline.to_global(batch, self.sharding, self.batch_size))
    jax.block_until_ready((self.state, metrics))
    return time.perf_counter() - start, examples


def main(argv):
  del argv
  run = machine.Run.from_flags()
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="genret_inputs_bench_")
  config = config_lib.resolve(config_lib.get_base_config())
  steps.run_prepare(config, workdir)
  ctx = steps.Context(config, workdir)
  ctx.set_ids(steps.run_ids(config, workdir))
  runners = {(v, t): Runner(ctx, t, o) for v, o in VARIANTS.items() for t in TASKS}
  for runner in runners.values():
    runner.run(_WARMUP.value)
  rounds: dict = {k: [] for k in runners}
  for _ in range(_ROUNDS.value):
    for key, runner in runners.items():
      seconds, examples = runner.run(_STEPS.value)
      rounds[key].append((seconds, examples))
  results = {}
  for (variant, task), rs in rounds.items():
    seconds = statistics.median(s for s, _ in rs)
    examples = sum(e for _, e in rs) / len(rs)
    results.setdefault(variant, {})[task] = {
        "step_ms": 1e3 * seconds / _STEPS.value,
        "examples_per_row": examples / (_STEPS.value * runners[(variant, task)].batch_size),
        "examples_per_sec": examples / seconds, "rounds": rs}
  blob = {"results": results, "steps": _STEPS.value, "rounds": _ROUNDS.value}
  warnings = run.finish(blob, ratios=True, path=_OUT.value)
  base = results[next(iter(VARIANTS))]
  print("| variant | task | examples/row | step ms | examples/s | vs before |")
  print("|---|---|---:|---:|---:|---:|")
  for variant, tasks in results.items():
    for task, r in tasks.items():
      print(f"| {variant} | {task} | {r['examples_per_row']:.2f} | {r['step_ms']:.0f} | "
            f"{r['examples_per_sec']:.0f} | "
            f"{r['examples_per_sec'] / base[task]['examples_per_sec']:.2f}x |")
  for line in warnings:
    print(line)
  m = blob["machine"]
  print(f"load average before {m['load_average_before']}, after {m['load_average_after']}; "
        f"{m['cpu_model']}, {m['cpu_count']} cores; wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
