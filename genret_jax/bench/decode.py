r"""Constrained decoding benchmark: our jitted trie tables vs per-beam Python tries.

  python -m genret_jax.bench.decode --out=/tmp/decode.json

One run, one model size (TIGER-like T5: d_model 128, 4+4 layers, 6 heads x 64,
MLP 1024, random weights), batch 64, beam 30, 4-token IDs (3 skewed RQ-like
codes of 256 + a dedup code, as in TIGER). Catalogs: 12,101 items (Amazon
Beauty's size) and 1,000,000 items. Methods:
  ours        genret_jax.decoding: trie tables as jit arguments, one program.
  ours_unc    the same beam search without constraints (top-k over the vocab).
  py_trie     our model's jitted decoder step, with the beam search driven from
              Python and a dict trie consulted per beam per step (what Hugging
              Face's prefix_allowed_tokens_fn does), numpy top-k.
  hf_trie     transformers T5ForConditionalGeneration.generate(num_beams=30,
              prefix_allowed_tokens_fn=dict trie) on a same-size PyTorch T5.
  hf_unc      the same generate() without the callback.
  ours_bf16   `ours` with bfloat16 activations (T5Config.dtype; float32
              parameters, logits and beam scores).
  hf_trie_bf16, hf_unc_bf16
              hf_trie and hf_unc with generate() under torch.autocast("cpu",
              bfloat16), what a Hugging Face user on a CPU would run.
`--skip_hf` leaves out the Hugging Face baselines, `--skip_hf_bf16` only
their bfloat16 runs, `--skip_ours_bf16` ours_bf16.
The slow baselines are timed on `--slow_batches` batches and reported per
query. A second table times the decoding step without the model (fixed
log-probabilities; constraint, top-k, gathers), which is what the trie layout
decides and what STATIC's per-step figures measure.

The JSON's ratios (smallest catalog unless named `_1m`): speedup_vs_hf_trie
(hf_trie over ours, seconds per batch), speedup_vs_hf_trie_bf16 (hf_trie_bf16
over ours), speedup_bf16_vs_hf_trie_bf16 (hf_trie_bf16 over ours_bf16),
speedup_vs_python_trie, ... (_SUMMARY_KEYS), with the machine block of
genret_jax.bench.machine (CPU, cores, AVX-512 / AMX flags, versions, load
average before and after); a busy run (the rule is in genret_jax.bench.machine)
keeps its ratios but marks them `ratios_valid: false` and prints a WARNING line.
"""

from __future__ import annotations

import dataclasses
import time

from absl import app, flags, logging
import jax
import jax.numpy as jnp
import numpy as np

from genret_jax.bench import machine, models, peers
from genret_jax.decoding import beam as bs
from genret_jax.decoding import model_decode
from genret_jax.decoding import trie as trie_lib
from genret_jax.model import network

_OUT = flags.DEFINE_string("out", "/tmp/decode_bench.json", "JSON output path.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Queries per batch.")
_BEAM = flags.DEFINE_integer("beam", 30, "Beam size.")
_VOCAB = flags.DEFINE_integer("vocab_size", 2048, "Vocabulary (1024 ID tokens + others).")
_INPUT_LEN = flags.DEFINE_integer("input_length", 64, "Encoder input tokens per query.")
_ITEMS = flags.DEFINE_list("items", ["12101", "1000000"], "Catalog sizes.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed batches per fast method (median).")
_SLOW = flags.DEFINE_integer("slow_batches", 1, "Timed batches for the Python baselines.")
_SKIP_HF = flags.DEFINE_bool("skip_hf", False, "Skip the Hugging Face baselines.")
_SKIP_HF_BF16 = flags.DEFINE_bool("skip_hf_bf16", False,
                                  "Skip the Hugging Face baselines' bfloat16 autocast runs.")
_SKIP_OURS_BF16 = flags.DEFINE_bool("skip_ours_bf16", False,
                                    "Skip our constrained search with bfloat16 activations.")

LEVELS, CODES = 4, 256
OFFSET = 2          # token ids 0 (pad / decoder start) and 1 (eos) come first


def tiger_like_codes(n: int, seed: int) -> np.ndarray:
  """int32[n, 4]: 3 skewed codes in [0, 256) + a dedup code (TIGER style)."""
  rng = np.random.default_rng(seed)
  c = (CODES * rng.random((n, LEVELS - 1)) ** 1.5).astype(np.int32)
  order = np.lexsort(c.T[::-1])
  sc = c[order]
  new = np.ones(n, bool)
  new[1:] = (sc[1:] != sc[:-1]).any(1)
  start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
  dedup = np.empty(n, np.int32)
  dedup[order] = np.arange(n) - start
  if dedup.max() >= CODES:
    raise ValueError(f"more than {CODES} items share a 3-code prefix")
  return np.concatenate([c, dedup[:, None]], 1)


def level_offsets():
  return [OFFSET + CODES * l for l in range(LEVELS)]


def _timed(fn, repeats):
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


# ---------------------------------------------------------------- Python dict trie
def dict_trie(seqs: np.ndarray) -> dict:
  """Nested dict {token: {...}} keyed after the decoder start token 0."""
  root: dict = {}
  for s in seqs.tolist():
    node = root
    for t in s:
      node = node.setdefault(t, {})
  return root


def make_prefix_allowed_tokens_fn(root: dict):
  """GENRE / GenSAR style callback: walk the dict trie along the beam's tokens."""
  def fn(batch_id, sent):
    del batch_id
    node = root
    for t in (sent.tolist() if hasattr(sent, "tolist") else sent)[1:]:
      node = node[t]
    return list(node.keys())
  return fn


class PythonTrieSearch:
  """Our model's jitted one-token step; beam search + dict-trie masks on the host."""

  def __init__(self, module, params, beam, vocab):
    self.module, self.params, self.beam, self.vocab = module, params, beam, vocab

    def prepare(params, x, steps):  # the same cache as ours: cross K/V once per query
      enc = module.apply({"params": params}, x, enable_dropout=False,
                         method=network.Transformer.encode)
      cache = network.init_cache(module, x.shape[0] * beam, steps, x.shape[1], params=params,
                                 encoded=enc, encoder_input_tokens=x, beams=beam)
      return enc, cache

    def step(params, enc, x, cache, tok):
      logits, v = module.apply({"params": params, "cache": cache}, enc, x, tok[:, None],
                               jnp.ones_like(tok[:, None]), enable_dropout=False, decode=True,
                               mutable=["cache"], method=network.Transformer.decode)
      return jax.nn.log_softmax(logits[:, 0]), v["cache"]

    def gather(cache, flat):  # per-beam leaves only (the cross K/V are per query)
      return jax.tree.map(lambda a: a[flat] if a.ndim and a.shape[0] == flat.shape[0] else a,
                          cache)

    self.prepare = jax.jit(prepare, static_argnums=(2,))
    self.step, self.gather = jax.jit(step), jax.jit(gather)

  def __call__(self, x, allowed_fn, steps, fixed_logprobs=None):
    """Beam search; with fixed_logprobs [steps, B*K, V] the model is not run."""
    k = self.beam
    b = x.shape[0] if fixed_logprobs is None else fixed_logprobs.shape[1] // k
    if fixed_logprobs is None:
      enc, cache = self.prepare(self.params, x, steps)
    scores = np.full((b, k), -1e9, np.float32)
    scores[:, 0] = 0
    seqs = np.zeros((b * k, 1), np.int64)
    for t in range(steps):
      if fixed_logprobs is None:
        lp, cache = self.step(self.params, enc, x, cache,
                              jnp.asarray(seqs[:, -1], jnp.int32))
        lp = np.asarray(lp)
      else:
        lp = fixed_logprobs[t]
      mask = np.full((b * k, self.vocab), -np.inf, np.float32)
      for i in range(b):                       # the per-beam callback, as in HF
        for j in range(k):
          mask[i * k + j, allowed_fn(i, seqs[i * k + j])] = 0
      total = (scores.reshape(-1, 1) + lp[:, :self.vocab] + mask).reshape(b, k * self.vocab)
      top = np.argpartition(-total, k - 1, axis=1)[:, :k]
      top = np.take_along_axis(top, np.argsort(-np.take_along_axis(total, top, 1), 1), 1)
      scores = np.take_along_axis(total, top, 1)
      origin = (np.arange(b)[:, None] * k + top // self.vocab).reshape(-1)
      seqs = np.concatenate([seqs[origin], (top % self.vocab).reshape(-1, 1)], 1)
      if fixed_logprobs is None:
        cache = self.gather(cache, jnp.asarray(origin))
    return scores, seqs


# ---------------------------------------------------------------- search without the model
def search_step_bench(trie, b, k, vocab, py_search, allowed_fn, repeats):
  """Seconds per decoding step with the model replaced by fixed log-probs.

  Everything else runs as in the real search: ours = the jitted beam_search
  (constraint tables, top-k, gathers); Python = the host beam search with the
  per-beam dict-trie callback (None when allowed_fn is None).
  """
  rng = np.random.default_rng(0)
  lp = jax.nn.log_softmax(jnp.asarray(
      rng.normal(size=(LEVELS, b * k, vocab)).astype(np.float32)), axis=-1)

  @jax.jit
  def ours(trie, lp):
    return bs.beam_search(lambda st: (lp[st.cur_index], st.cache), {}, trie, batch_size=b,
                          beam_size=k, num_results=k)

  jax.block_until_ready(ours(trie, lp))
  t_ours = _timed(lambda: ours(trie, lp), repeats * 5) / LEVELS
  if allowed_fn is None:
    return t_ours, None
  lp_np = np.asarray(lp)
  t_py = _timed(lambda: py_search(None, allowed_fn, LEVELS, lp_np)[0], repeats) / LEVELS
  return t_ours, t_py


def constraint_bench(trie, b, k, vocab, allowed_fn, seqs, repeats):
  """Milliseconds per level of the constraint alone (allowed tokens + mask).

  Ours: `level.score` (table gather + mask) for K beams on random valid nodes;
  Python: the per-beam dict-trie callback filling a -inf mask row (HF's
  PrefixConstrainedLogitsProcessor). Normalisation and top-k, common to both,
  are excluded. Averaged over the L levels.
  """
  rng = np.random.default_rng(0)
  scores_v = jnp.asarray(rng.normal(size=(b, k, vocab)).astype(np.float32))
  t_ours, t_py = 0.0, 0.0
  for l, level in enumerate(trie.levels):
    n_nodes = (level.next.shape[0] if isinstance(level, trie_lib.DenseLevel)
               else level.row_ptr.shape[0] - 1)
    nodes = jnp.asarray(rng.integers(0, n_nodes, (b, k)), jnp.int32)
    f = jax.jit(lambda tr, n, v, l=l: tr.levels[l].score(n, v)[2])
    jax.block_until_ready(f(trie, nodes, scores_v))
    t_ours += _timed(lambda: f(trie, nodes, scores_v), repeats * 10) / len(trie.levels)
    if allowed_fn is not None:
      prefixes = np.concatenate([np.zeros((len(seqs), 1), np.int64), seqs[:, :l]], 1)
      picks = prefixes[rng.integers(0, len(prefixes), b * k)]

      def python_mask():
        mask = np.full((b * k, vocab), -np.inf, np.float32)
        for i in range(b):
          for j in range(k):
            mask[i * k + j, allowed_fn(i, picks[i * k + j])] = 0
        return mask

      t_py += _timed(python_mask, repeats) / len(trie.levels)
  return 1e3 * t_ours, (1e3 * t_py if allowed_fn is not None else None)


_SUMMARY_KEYS = ("speedup_vs_hf_trie", "speedup_vs_hf_trie_bf16", "speedup_bf16_vs_hf_trie_bf16",
                 "speedup_vs_python_trie",
                 "search_step_speedup_vs_python_trie", "constraint_speedup_vs_python_trie",
                 "constrained_over_unconstrained", "constrained_over_unconstrained_1m",
                 "table_mb_per_million_items", "table_build_seconds_1m",
                 "latency_ratio_1m_over_10k", "search_step_ratio_1m_over_10k")
_METHODS = ("ours", "ours_unc", "ours_bf16", "py_trie", "hf_trie", "hf_trie_bf16", "hf_unc",
            "hf_unc_bf16")


def our_sides(module) -> list[tuple[str, network.Transformer, str]]:
  """(name, module, mode) of our searches: ours, ours_unc and (unless --skip_ours_bf16)
  ours_bf16, the constrained search with bfloat16 activations."""
  sides = [("ours", module, "constrained"), ("ours_unc", module, "unconstrained")]
  if not _SKIP_OURS_BF16.value:
    bf16 = network.Transformer(dataclasses.replace(module.config, dtype=jnp.bfloat16))
    sides.append(("ours_bf16", bf16, "constrained"))
  return sides


def build_catalog(n: int) -> tuple[np.ndarray, trie_lib.Trie, dict]:
  """(codes int32[n, 4], the trie on device, the catalog's table record)."""
  codes = tiger_like_codes(n, seed=n)
  t0 = time.perf_counter()
  trie = trie_lib.build_trie(codes, level_offsets(), [CODES] * LEVELS)
  build_s = time.perf_counter() - t0
  trie = jax.device_put(trie)
  info = dict(items=n, table_mb=trie.nbytes / 2**20, build_seconds=build_s,
              levels=[type(lv).__name__ for lv in trie.levels],
              widths=[lv.width for lv in trie.levels])
  return codes, trie, info


def compile_ours(sides, params, x, trie, info: dict) -> bs.BeamSearchOutput:
  """Compiles our searches (seconds, XLA's GFLOP, the unconstrained invalid-ID rate and
  the bfloat16 search's top-1 agreement with ours into `info`); returns ours' output."""
  kw = dict(beam_size=_BEAM.value, num_results=_BEAM.value)
  outs = {}
  for name, module, mode in sides:
    t0 = time.perf_counter()
    outs[name] = jax.block_until_ready(
        model_decode.search_jit(module, params, x, trie, mode=mode, **kw))
    info[f"{name}_compile_seconds"] = time.perf_counter() - t0
    cost = model_decode.search_jit.lower(module, params, x, trie, mode=mode,
                                         **kw).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    info[f"{name}_gflop"] = float(cost.get("flops", float("nan"))) / 1e9
  un = outs["ours_unc"]
  alive = np.isfinite(np.asarray(un.beam_scores))
  info["unconstrained_invalid_rate"] = float(
      ((np.asarray(un.beam_leaves) < 0) & alive).sum() / alive.sum())
  if "ours_bf16" in outs:
    best = [np.asarray(outs[name].sequences)[:, 0] for name in ("ours", "ours_bf16")]
    info["ours_bf16_top1_agreement"] = float((best[0] == best[1]).all(1).mean())
  return outs["ours"]


def time_ours(sides, params, x, trie, info: dict) -> None:
  """Median seconds per batch of our searches, interleaved so load changes hit all."""
  kw = dict(beam_size=_BEAM.value, num_results=_BEAM.value)
  t = {name: [] for name, _, _ in sides}
  for _ in range(_REPEATS.value):
    for name, module, mode in sides:
      t[name].append(_timed(lambda m=module, mode=mode: model_decode.search_jit(
          m, params, x, trie, mode=mode, **kw), 1))
  for name in t:
    info[f"{name}_batch_seconds"] = float(np.median(t[name]))


def python_baselines(seqs: np.ndarray, module, params, x, vocab: int,
                     ours_out: bs.BeamSearchOutput, info: dict):
  """Times the per-beam dict-trie search (and Hugging Face's unless --skip_hf); returns
  (the allowed-tokens callback, the Python search) for the step benchmarks."""
  b, k, steps = x.shape[0], _BEAM.value, LEVELS
  fn = make_prefix_allowed_tokens_fn(dict_trie(seqs))
  py = PythonTrieSearch(module, params, k, vocab)
  py(x, fn, steps)   # compile
  info["py_trie_batch_seconds"] = _timed(lambda: py(x, fn, steps)[0], _SLOW.value)
  # Same model, same search: the best identifier per query must agree.
  _, py_seqs = py(x, fn, steps)
  best_py = py_seqs.reshape(b, k, -1)[:, 0, 1:]
  best_ours = np.asarray(ours_out.sequences)[:, 0]
  info["py_trie_top1_agreement"] = float((best_py == best_ours).all(1).mean())
  if not _SKIP_HF.value:
    hf = peers.hf_decode_model(vocab)
    runs = {"hf_trie": (fn, False), "hf_unc": (None, False)}
    if not _SKIP_HF_BF16.value:
      runs.update(hf_trie_bf16=(fn, True), hf_unc_bf16=(None, True))
    for allowed, bf16 in runs.values():      # warm-up
      peers.hf_generate(hf, x[:2], k, steps, allowed, bf16)
    t = {name: [] for name in runs}
    for _ in range(_SLOW.value):             # alternating, as ours
      for name, (allowed, bf16) in runs.items():
        t[name].append(_timed(lambda a=allowed, h=bf16: peers.hf_generate(
            hf, x, k, steps, a, h), 1))
    for name in t:
      info[f"{name}_batch_seconds"] = float(np.median(t[name]))
  return fn, py


def bench_catalog(n: int, module, params, x, vocab: int) -> dict:
  """Every measurement of one catalog size."""
  codes, trie, info = build_catalog(n)
  sides = our_sides(module)
  ours_out = compile_ours(sides, params, x, trie, info)
  time_ours(sides, params, x, trie, info)
  seqs = codes + np.array(level_offsets())
  fn = py = None
  if n <= 200_000:
    fn, py = python_baselines(seqs, module, params, x, vocab, ours_out, info)
  # the decoding step without the model (fixed log-probs).
  t_ours, t_py = search_step_bench(trie, x.shape[0], _BEAM.value, vocab, py, fn, _SLOW.value)
  info["step_ours_ms"] = 1e3 * t_ours
  if t_py is not None:
    info["step_py_trie_ms"] = 1e3 * t_py
  c_ours, c_py = constraint_bench(trie, x.shape[0], _BEAM.value, vocab, fn, seqs, _SLOW.value)
  info["constraint_ours_ms"] = c_ours
  if c_py is not None:
    info["constraint_py_trie_ms"] = c_py
  logging.info("catalog %d: %s", n, info)
  return info


def summarize(per_catalog: dict[int, dict]) -> dict[str, float]:
  """Ratios between methods (smallest catalog) and between catalog sizes."""
  small, large = per_catalog[min(per_catalog)], per_catalog[max(per_catalog)]
  res = {"speedup_vs_python_trie": small["py_trie_batch_seconds"] / small["ours_batch_seconds"]}
  if "hf_trie_batch_seconds" in small:
    res["speedup_vs_hf_trie"] = small["hf_trie_batch_seconds"] / small["ours_batch_seconds"]
  if "hf_trie_bf16_batch_seconds" in small:
    res["speedup_vs_hf_trie_bf16"] = (small["hf_trie_bf16_batch_seconds"]
                                      / small["ours_batch_seconds"])
    if "ours_bf16_batch_seconds" in small:
      res["speedup_bf16_vs_hf_trie_bf16"] = (small["hf_trie_bf16_batch_seconds"]
                                             / small["ours_bf16_batch_seconds"])
  res["search_step_speedup_vs_python_trie"] = small["step_py_trie_ms"] / small["step_ours_ms"]
  res["constraint_speedup_vs_python_trie"] = (small["constraint_py_trie_ms"]
                                              / small["constraint_ours_ms"])
  res["constrained_over_unconstrained"] = small["ours_batch_seconds"] / small[
      "ours_unc_batch_seconds"]
  res["constrained_over_unconstrained_1m"] = large["ours_batch_seconds"] / large[
      "ours_unc_batch_seconds"]
  res["table_mb_per_million_items"] = large["table_mb"] / (large["items"] / 1e6)
  res["table_build_seconds_1m"] = large["build_seconds"] * 1e6 / large["items"]
  res["latency_ratio_1m_over_10k"] = large["ours_batch_seconds"] / small["ours_batch_seconds"]
  res["search_step_ratio_1m_over_10k"] = large["step_ours_ms"] / small["step_ours_ms"]
  return res


def print_tables(per_catalog: dict[int, dict], res: dict, batch: int) -> None:
  """The markdown tables and ratios of docs/benchmarks.md."""
  print("| items | method | queries/s | ms/step | s/batch |")
  print("|---:|---|---:|---:|---:|")
  for n, v in per_catalog.items():
    for m in _METHODS:
      if f"{m}_batch_seconds" in v:
        s = v[f"{m}_batch_seconds"]
        print(f"| {n} | {m} | {batch / s:.1f} | {1e3 * s / LEVELS:.1f} | {s:.3f} |")
  print()
  for n, v in per_catalog.items():
    print(f"catalog {n}: ours {v['ours_gflop']:.1f} GFLOP per batch (XLA cost analysis), "
          f"{v['ours_gflop'] / v['ours_batch_seconds']:.0f} GFLOP/s achieved")
  print()
  print("| items | table MB | build s | levels | step w/o model ms: ours | python trie "
        "| constraint ms: ours | python trie |")
  print("|---:|---:|---:|---|---:|---:|---:|---:|")
  nan = float("nan")
  for n, v in per_catalog.items():
    print(f"| {n} | {v['table_mb']:.2f} | {v['build_seconds']:.2f} | "
          f"{'/'.join(x[0] for x in v['levels'])} | {v['step_ours_ms']:.2f} | "
          f"{v.get('step_py_trie_ms', nan):.1f} | {v['constraint_ours_ms']:.3f} | "
          f"{v.get('constraint_py_trie_ms', nan):.1f} |")
  print()
  for key in _SUMMARY_KEYS:
    if key in res:
      print(f"{key}: {res[key]:.3f}")


def main(argv):
  del argv
  run = machine.Run.from_flags()
  b, vocab = _BATCH.value, network.pad_vocab_size(_VOCAB.value)
  module, params = models.tiger_like_model(vocab)
  x = np.random.default_rng(1).integers(2, vocab, (b, _INPUT_LEN.value)).astype(np.int32)
  per_catalog = {n: bench_catalog(n, module, params, x, vocab)
                 for n in [int(s) for s in _ITEMS.value]}
  res = {"config": dict(batch_size=b, beam=_BEAM.value, vocab_size=vocab,
                        input_length=_INPUT_LEN.value, id_length=LEVELS,
                        model=models.TIGER_DIMS_TEXT, backend=jax.default_backend(),
                        devices=jax.device_count()),
         "catalogs": {str(n): v for n, v in per_catalog.items()}}
  res.update(summarize(per_catalog))
  warnings = run.finish(res, ratios=True, path=_OUT.value)
  print_tables(per_catalog, res, b)
  for line in warnings:
    print(line)


if __name__ == "__main__":
  app.run(main)
