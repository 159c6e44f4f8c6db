r"""Training-step throughput: our jitted train step vs Hugging Face PyTorch T5, fp32 and bf16.

  python -m genret_jax.bench.train --out=/tmp/train_bench.json

Per model size (`tiny`, `small` of genret_jax.model.network), every side trains
the same T5 v1.1 network (gated-GELU, untied head, dropout 0.1, random init) on
the same random batches: batch 64, 64 input tokens, 8 target tokens, AdamW
(lr 1e-3, weight decay 0.01) with global-norm clipping 1.0.
  ours       genret_jax.train.step: one jax.jit (donated state) on one device.
  ours_bf16  the same with bfloat16 activations (T5Config.dtype, model.dtype=
             bfloat16 in a job); parameters, optimizer and loss stay float32.
  hf         transformers T5ForConditionalGeneration (genret_jax.bench.peers):
             forward with labels, backward, clip_grad_norm_, torch.optim.AdamW.
  hf_bf16    the same with forward and backward under torch.autocast("cpu",
             bfloat16); parameters and AdamW stay float32, as HF users run it.
`--skip_ours_bf16`, `--skip_hf`, `--skip_hf_bf16` leave a side out.
With `--cpu_variants`, our step is also timed as it was before two CPU
changes, alone and together (a second table):
  xla_default   XLA's default YNNPACK fusions (no partitioning.compiler_options)
  dropout_32bit 32 random bits per attention-dropout draw (jax.random.bernoulli)
  before        both
Each side runs in its own process (genret_jax.bench.isolate: JAX and torch in
one process slow each other down), built there from this command line. All are
timed the same way, alternating in `--rounds` rounds of `--steps`
steps after `--warmup` untimed steps (compilation included there), and the
median round is reported, so background load hits all alike. Threads: torch
gets torch.set_num_threads(--threads) (default: the cores this process may
use, os.sched_getaffinity) and its default inter-op threads; XLA's CPU backend uses
one intra-op pool over all cores by default.

The JSON has, per size, `speedup_vs_hf` (ours over hf, examples/s),
`speedup_vs_hf_bf16` (ours over hf_bf16) and `speedup_bf16_vs_hf_bf16`
(ours_bf16 over hf_bf16), each side's results, and the machine block of
genret_jax.bench.machine (CPU, cores, AVX-512 / AMX flags, versions, load
average before and after); a busy run (the rule is in genret_jax.bench.machine)
keeps its ratios but marks them `ratios_valid: false` and prints a WARNING line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genret_jax.bench import isolate, machine, peers
from genret_jax.model import config as model_config
from genret_jax.model import network, partitioning
from genret_jax.train import config as train_config
from genret_jax.train import optim, state as state_lib, step as step_lib

_OUT = flags.DEFINE_string("out", "/tmp/train_bench.json", "JSON output path.")
_SIZES = flags.DEFINE_list("sizes", ["tiny", "small"], "Model sizes (genret_jax.model.network).")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Examples per step.")
_INPUT_LEN = flags.DEFINE_integer("input_length", 64, "Encoder tokens per example.")
_TARGET_LEN = flags.DEFINE_integer("target_length", 8, "Decoder tokens per example.")
_VOCAB = flags.DEFINE_integer("vocab_size", 4096, "Vocabulary (text pieces + ID tokens).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps per framework and size.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds; the median is reported.")
_THREADS = flags.DEFINE_integer("threads", 0,
                                "torch threads; 0 = the cores this process may use.")
_SKIP_HF = flags.DEFINE_bool("skip_hf", False, "Leave out the float32 Hugging Face peer.")
_SKIP_HF_BF16 = flags.DEFINE_bool("skip_hf_bf16", False,
                                  "Leave out the Hugging Face peer under bfloat16 autocast.")
_SKIP_OURS_BF16 = flags.DEFINE_bool("skip_ours_bf16", False,
                                    "Leave out our step with bfloat16 activations.")
_DIMS = flags.DEFINE_list(
    "dims", [], "T5Config dimension overrides applied to every size, key=value (e.g. TIGER's: "
    "emb_dim=128,num_heads=6,head_dim=64,mlp_dim=1024,num_encoder_layers=4,num_decoder_layers=4).")
_CPU_VARIANTS = flags.DEFINE_bool("cpu_variants", False,
                                  "Also time our step without its CPU compiler options and/or "
                                  "with 32-bit attention dropout.")

# name -> (XLA compiler options or None = partitioning.compiler_options, dropout bits)
VARIANTS = {"xla_default": ({}, 16), "dropout_32bit": (None, 32), "before": ({}, 32)}


def _train_config() -> ml_collections.ConfigDict:
  cfg = train_config.default_config()
  cfg.optimizer, cfg.learning_rate, cfg.schedule, cfg.warmup_steps = "adamw", 1e-3, "constant", 0
  cfg.weight_decay, cfg.grad_clip_norm, cfg.z_loss = 0.01, 1.0, 0.0
  return cfg


def random_batches(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
  """`n` batches of int32 tokens in [2, vocab): full-length inputs and targets."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    enc = rng.integers(2, _VOCAB.value, (_BATCH.value, _INPUT_LEN.value), dtype=np.int32)
    tgt = rng.integers(2, _VOCAB.value, (_BATCH.value, _TARGET_LEN.value), dtype=np.int32)
    dec_in = np.concatenate([np.zeros_like(tgt[:, :1]), tgt[:, :-1]], axis=1)
    out.append({"encoder_input_tokens": enc, "decoder_input_tokens": dec_in,
                "decoder_target_tokens": tgt, "decoder_loss_weights": np.ones_like(tgt)})
  return out


def parse_dims(items: list[str]) -> dict[str, int]:
  """`--dims` entries 'key=value' -> {T5Config dimension field: int}.

  Raises:
    app.UsageError: an entry that is not key=positive-int or a key outside
      genret_jax.model.config.DIM_KEYS.
  """
  out = {}
  for item in items:
    key, _, value = item.partition("=")
    if key not in model_config.DIM_KEYS or not value.isdigit() or int(value) < 1:
      raise app.UsageError(f"--dims entry {item!r}: want key=positive int with key one of "
                           f"{', '.join(model_config.DIM_KEYS)}")
    out[key] = int(value)
  return out


def t5_config(size: str, dropout_bits: int = 16, dtype=jnp.float32) -> network.T5Config:
  """The benchmarked network: `size` with the --dims overrides, dropout 0.1."""
  return network.t5_config(size, _VOCAB.value, dropout_rate=0.1,
                           attention_dropout_bits=dropout_bits, dtype=dtype,
                           **parse_dims(_DIMS.value))


def hf_side(size: str, bf16: bool, threads: int) -> peers.HFTrain:
  """The Hugging Face peer of `size` on `threads` torch threads."""
  # torch is optional (the `test` extra).
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  return peers.HFTrain(t5_config(size), bf16=bf16)


class Ours:
  """Our train step on a 1x1 mesh over the first device.

  compiler_options: None = the train step's own (partitioning.compiler_options);
  a dict replaces them. dropout_bits: the network's attention_dropout_bits.
  dtype: the activation dtype (parameters are float32 either way).
  """

  def __init__(self, size: str, compiler_options: dict[str, str] | None = None,
               dropout_bits: int = 16, dtype=jnp.float32):
    self.t5 = t5_config(size, dropout_bits, dtype)
    model = network.Transformer(self.t5)
    cfg = _train_config()
    mesh = partitioning.make_mesh(ml_collections.ConfigDict({"data": 1, "model": 1}),
                                  jax.devices()[:1])
    rules = partitioning.LOGICAL_AXIS_RULES
    tx = optim.make_optimizer(cfg)
    _, shardings = state_lib.state_shardings(model, tx, mesh, rules, _INPUT_LEN.value,
                                             _TARGET_LEN.value)
    self.state = state_lib.init_train_state(model, tx, 0, shardings, _INPUT_LEN.value,
                                            _TARGET_LEN.value)
    self.num_params = sum(x.size for x in jax.tree_util.tree_leaves(self.state.params))
    self.sharding = step_lib.batch_sharding(mesh)
    step = step_lib.make_train_step(model, tx, optim.learning_rate_schedule(cfg), cfg)
    kwargs = step_lib.train_step_jit_kwargs(mesh, shardings)
    if compiler_options is not None:
      kwargs["compiler_options"] = compiler_options
    self.step = step_lib.JittedStep(step, mesh, rules, **kwargs)

  def run(self, batches) -> float:
    """Seconds for len(batches) steps, host batches to finished update."""
    start = time.perf_counter()
    metrics = None
    for batch in batches:
      self.state, metrics = self.step(self.state, jax.device_put(batch, self.sharding))
    jax.block_until_ready((self.state, metrics))
    return time.perf_counter() - start


def bench_size(size: str, batches, threads: int) -> dict:
  """{side: timings} for one size, each side in its own process (bench.isolate)."""
  sides = {"ours": (Ours, (size,), {})}
  if not _SKIP_OURS_BF16.value:
    sides["ours_bf16"] = (Ours, (size,), {"dtype": jnp.bfloat16})
  if _CPU_VARIANTS.value:
    sides.update({name: (Ours, (size, *v), {}) for name, v in VARIANTS.items()})
  if not _SKIP_HF.value:
    sides["hf"] = (hf_side, (size, False, threads), {})
  if not _SKIP_HF_BF16.value:
    sides["hf_bf16"] = (hf_side, (size, True, threads), {})
  warm, timed = batches[:_WARMUP.value], batches[_WARMUP.value:]
  runners = {}
  try:
    for name, (factory, args, kwargs) in sides.items():
      runners[name] = isolate.Isolated(factory, *args, argv=sys.argv, **kwargs)
    seconds = {name: [] for name in runners}
    compile_s = {name: runner.call("run", warm) for name, runner in runners.items()}
    for _ in range(_ROUNDS.value):
      for name, runner in runners.items():
        seconds[name].append(runner.call("run", timed))
    per_step_tokens = _BATCH.value * (_INPUT_LEN.value + _TARGET_LEN.value)
    out = {}
    for name, runner in runners.items():
      step_s = statistics.median(seconds[name]) / len(timed)
      out[name] = {"step_ms": 1e3 * step_s, "examples_per_sec": _BATCH.value / step_s,
                   "tokens_per_sec": per_step_tokens / step_s,
                   "params": int(runner.get("num_params")),
                   "round_seconds": seconds[name], "warmup_seconds": compile_s[name]}
      if name.startswith("hf"):
        losses = runner.get("losses")
        out[name]["first_loss"], out[name]["last_loss"] = losses[0], losses[-1]
  finally:
    for runner in runners.values():
      runner.close()
  return out


# JSON key -> (numerator side, denominator side): examples/s over examples/s.
SPEEDUPS = {"speedup_vs_hf": ("ours", "hf"), "speedup_vs_hf_bf16": ("ours", "hf_bf16"),
            "speedup_bf16_vs_hf_bf16": ("ours_bf16", "hf_bf16")}


def speedups(result: dict) -> dict[str, float]:
  """{SPEEDUPS key: ratio} for the pairs of sides that ran at one size."""
  return {key: result[a]["examples_per_sec"] / result[b]["examples_per_sec"]
          for key, (a, b) in SPEEDUPS.items() if a in result and b in result}


def main(argv):
  del argv
  parse_dims(_DIMS.value)  # bad --dims fail before any work
  run = machine.Run.from_flags()
  threads = _THREADS.value or machine.cores_available()
  batches = random_batches(_WARMUP.value + _STEPS.value)
  results, ratios = {}, {key: {} for key in SPEEDUPS}
  for size in _SIZES.value:
    results[size] = bench_size(size, batches, threads)
    for key, value in speedups(results[size]).items():
      ratios[key][size] = value
    print(f"{size}: " + ", ".join(f"{name} {r['examples_per_sec']:.1f} ex/s"
                                  for name, r in results[size].items()), flush=True)
    # partial results survive an interrupted run
    _write(run.stamp(_report(results, ratios, threads), ratios=True))
  warnings = run.finish(_report(results, ratios, threads), ratios=True, path=_OUT.value)
  _print_table(results)
  for line in warnings:
    print(line)
  print(f"wrote {_OUT.value}")


def _report(results: dict, ratios: dict, threads: int) -> dict:
  return {
      **ratios, "results": results,
      "setup": {"batch_size": _BATCH.value, "input_length": _INPUT_LEN.value,
                "target_length": _TARGET_LEN.value, "vocab_size": _VOCAB.value,
                "dims": _DIMS.value,
                "optimizer": "AdamW lr 1e-3 wd 0.01, clip 1.0", "dropout": 0.1,
                "steps": _STEPS.value, "rounds": _ROUNDS.value, "warmup": _WARMUP.value,
                "torch_threads": threads, "jax_devices": str(jax.devices()[0])},
  }


def _write(report: dict) -> None:
  with open(_OUT.value, "w") as f:
    json.dump(report, f, indent=1)


def _print_table(results: dict) -> None:
  ms = lambda r, name: f"{r[name]['step_ms']:.1f}" if name in r else "-"
  print("| size | params | ours ms/step | ours bf16 | HF ms/step | HF bf16 | ours vs HF "
        "| ours vs HF bf16 | ours bf16 vs HF bf16 |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
  for size, r in results.items():
    sp = speedups(r)
    print(f"| {size} | {r['ours']['params'] / 1e6:.2f}M | {ms(r, 'ours')} | "
          f"{ms(r, 'ours_bf16')} | {ms(r, 'hf')} | {ms(r, 'hf_bf16')} | "
          + " | ".join(f"{sp[key]:.2f}x" if key in sp else "-" for key in SPEEDUPS) + " |")
  if any(v in r for r in results.values() for v in VARIANTS):
    print("\n| size | variant | step ms | ex/s | ours' speedup over it |")
    print("|---|---|---|---|---|")
    for size, r in results.items():
      for name in ("ours", *VARIANTS):
        print(f"| {size} | {name} | {r[name]['step_ms']:.0f} | {r[name]['examples_per_sec']:.1f} | "
              f"{r['ours']['examples_per_sec'] / r[name]['examples_per_sec']:.2f}x |")


if __name__ == "__main__":
  app.run(main)
