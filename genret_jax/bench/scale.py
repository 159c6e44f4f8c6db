r"""Scale run (issue 7): prepare -> ids -> trie tables -> decoding on a large simulated catalog.

  python -m genret_jax.bench.scale --out=/tmp/scale.json [--num_items=1000000
      --num_events=10000000 --num_users=500000 --queries=1024 --workdir=/tmp/genret_scale]

Every stage runs the project's own code path, in its own subprocess (unless
--in_process), so that its peak memory is its own (which is why each stage
imports what it uses inside its function: the parent process and the other
stages never load it):

  prepare  genret_jax.data.readers.load_raw (the simulator, every knob passed
           explicitly, see SIMULATOR) + genret_jax.data.prepare.write_prepared:
           what `--mode=prepare` runs; writes {workdir}/prepared (sharded
           TFRecords + manifest). Its parts: simulate, then write_prepared's
           phases (prepare.PHASES, via on_phase).
  ids      genret_jax.data.prepared.load + genret_jax.ids.build.build_identifiers
           for `atomic` and `rq_kmeans` (TF-IDF + SVD content embeddings of the
           item text, `--rq_iterations` Lloyd iterations): what `--mode=ids` runs.
  trie     genret_jax.decoding.trie.trie_from_id_table for both ID tables, with
           the vocabulary's level offsets and `decode.dense_max_mb` (dense + CSR).
  decode   genret_jax.evaluation.generative.generate_items (jitted constrained
           beam search, model_decode.search_jit) with a random-weight TIGER-like
           T5 (d_model 128, 4+4 layers, 6 heads x 64, MLP 1024, as
           genret_jax.bench.decode) over the first --queries search events of the
           prepared test split, tokenized with the prepared SentencePiece model
           and the default search prompt; rq_kmeans IDs (an atomic ID is one
           token of a 1M-token output layer: [batch x beam, 1M] logits per step).

Item text embeddings keep --semantic_features TF-IDF terms: with the
default ids.semantic.max_features of 50,000, 51% of a 1M-item simulated
catalog (50,000 clusters x 5 cluster terms alone) has no kept term, its
embeddings are zero, RQ-KMeans puts 98.5% of the items behind one 3-code
prefix and the dedup level needs 984,700 codes; decoding then stops with the
logits-memory check (check_logits_memory) instead of running out of memory.

Per stage (and per part of a stage): wall and CPU seconds (time.process_time,
all threads), the peak resident set size sampled every 20 ms from
/proc/self/status (VmRSS) while it runs, and the RSS before and after. In a
subprocess the process's own peak (getrusage ru_maxrss, which no sampling can
miss) is reported too and the stage peak is the larger of the two. The
1-minute load average is recorded at the start and end of every stage, and the
run's machine block (genret_jax.bench.machine: CPU, cores, flags, versions, load
average before and after, CPU used by other processes) in `machine`: the machine
may be shared. A busy run (load average before, or other processes' CPU during
it, above --max_load) says `"busy": true` and prints `WARNING: ...: timings are
not results (other jobs were running)`; --strict_load exits non-zero instead.
Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time

from absl import app, flags
import numpy as np

from genret_jax.bench import machine

_OUT = flags.DEFINE_string("out", "/tmp/scale_bench.json", "JSON output path.")
_ITEMS = flags.DEFINE_integer("num_items", 1_000_000, "Catalog size (a multiple of 4).")
_EVENTS = flags.DEFINE_integer("num_events", 10_000_000, "Events (num_users x events_per_user).")
_USERS = flags.DEFINE_integer("num_users", 0, "Users; 0 = num_events / 20.")
_CLUSTERS = flags.DEFINE_integer("num_clusters", 0, "Simulator clusters; 0 = num_items / 20.")
_QUERIES = flags.DEFINE_integer("queries", 1024, "Test-split search queries to decode.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/genret_scale", "Where the stages write.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Queries per decoding call.")
_BEAM = flags.DEFINE_integer("beam", 30, "Beam size (= results per query).")
_INPUT_LEN = flags.DEFINE_integer("input_length", 64, "Encoder input tokens per query.")
_RQ_ITERS = flags.DEFINE_integer("rq_iterations", 10, "RQ-KMeans Lloyd iterations per level.")
_CODES = flags.DEFINE_integer("codebook_size", 256, "RQ-KMeans codes per level.")
_DIM = flags.DEFINE_integer("semantic_dim", 128, "TF-IDF + SVD embedding dimension.")
_FEATURES = flags.DEFINE_integer(
    "semantic_features", 262_144, "TF-IDF terms kept (ids.semantic.max_features; the "
    "default 50,000 leaves 51% of a 1M-item simulated catalog without any term).")
_STAGES = flags.DEFINE_list("stages", ["prepare", "ids", "trie", "decode"],
                            "Stages to run (later ones read what earlier ones wrote).")
_IN_PROCESS = flags.DEFINE_bool("in_process", False,
                                "Run every stage in this process (faster; peaks sampled only).")
_WORKER = flags.DEFINE_string("worker", "", "Internal: run one stage and print its JSON.")

STAGES = ("prepare", "ids", "trie", "decode")
SCHEMES = ("atomic", "rq_kmeans")
# Every simulator knob, explicit (docs/data.md); sizes come from the flags.
SIMULATOR = dict(items_per_query=4, session_length=5, search_fraction=0.3, zipf_exponent=1.0,
                 cooccurrence=0.8, user_focus=0.5, popularity_kl=0.5, matching_queries=0.8,
                 relevant_pairs=0.9)
_FORWARD = (_ITEMS, _EVENTS, _USERS, _CLUSTERS, _QUERIES, _WORKDIR, _BATCH, _BEAM, _INPUT_LEN,
            _RQ_ITERS, _CODES, _DIM, _FEATURES)


# ---------------------------------------------------------------- measuring
def _rss_mb() -> float:
  """Current resident set size (MiB)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return float(line.split()[1]) / 1024.0
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Sampler:
  """A daemon thread raising the `peak` of every open Meter to the current RSS."""

  def __init__(self, interval: float = 0.02):
    self.interval = interval
    self.open: list[dict] = []
    self.lock = threading.Lock()
    threading.Thread(target=self._run, daemon=True).start()

  def _run(self):
    while True:
      rss = _rss_mb()
      with self.lock:
        for m in self.open:
          m["peak_rss_mb"] = max(m["peak_rss_mb"], rss)
      time.sleep(self.interval)


_SAMPLER: _Sampler | None = None


def _start(record: dict) -> dict:
  global _SAMPLER
  if _SAMPLER is None:
    _SAMPLER = _Sampler()
  rss = _rss_mb()
  record.update(rss_start_mb=rss, peak_rss_mb=rss, load_start=machine.load_average()[0],
                _t0=time.perf_counter(), _c0=time.process_time())
  with _SAMPLER.lock:
    _SAMPLER.open.append(record)
  return record


def _stop(record: dict) -> dict:
  wall = time.perf_counter() - record.pop("_t0")
  cpu = time.process_time() - record.pop("_c0")
  with _SAMPLER.lock:
    _SAMPLER.open.remove(record)
  rss = _rss_mb()
  record.update(wall_s=round(wall, 4), cpu_s=round(cpu, 4), rss_end_mb=round(rss, 1),
                peak_rss_mb=round(max(record["peak_rss_mb"], rss), 1),
                rss_start_mb=round(record["rss_start_mb"], 1),
                load_end=machine.load_average()[0])
  return record


@contextlib.contextmanager
def meter(record: dict):
  """Fills `record` with wall_s, cpu_s, rss_start_mb, peak_rss_mb, rss_end_mb, load."""
  _start(record)
  try:
    yield record
  finally:
    _stop(record)


class Phases:
  """Meters consecutive phases: `phases(name)` files the running one as `prefix + name`
  in `parts` and starts the next (the `on_phase` callback of write_prepared)."""

  def __init__(self, parts: dict, prefix: str):
    self.parts, self.prefix = parts, prefix
    self.current = _start({})

  def __call__(self, name: str) -> None:
    self.parts[self.prefix + name] = _stop(self.current)
    self.current = _start({})

  def close(self) -> None:
    _stop(self.current)


def _dir_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


# ---------------------------------------------------------------- configuration
def num_users() -> int:
  return _USERS.value or max(1, _EVENTS.value // 20)


def make_config():
  """The base config with the simulator sized by the flags (every knob explicit)."""
  from genret_jax import config as base_config  # pylint: disable=g-import-not-at-top
  c = base_config.get_base_config()
  s = c.data.simulator
  users = num_users()
  if _EVENTS.value % users:
    raise app.UsageError(f"--num_events={_EVENTS.value} is not a multiple of num_users={users}")
  s.num_items, s.num_users, s.events_per_user = _ITEMS.value, users, _EVENTS.value // users
  s.num_clusters = _CLUSTERS.value or max(1, _ITEMS.value // 20)
  for key, value in SIMULATOR.items():
    s[key] = value
  c.data.source = "simulated"
  c.ids.semantic.dim = _DIM.value
  c.ids.semantic.max_features = _FEATURES.value
  c.ids.rq_kmeans.iterations = _RQ_ITERS.value
  c.ids.rq_kmeans.codebook_size = _CODES.value
  c.decode.batch_size = _BATCH.value
  c.decode.beam_size = _BEAM.value
  c.decode.mode = "constrained"
  return c


def prepared_dir() -> str:
  return os.path.join(_WORKDIR.value, "prepared")


# ---------------------------------------------------------------- stages
def stage_prepare(rec: dict) -> None:
  from genret_jax.data import prepare, prepared  # pylint: disable=g-import-not-at-top
  from genret_jax.data.readers import load_raw  # pylint: disable=g-import-not-at-top
  from genret_jax.tasks import vocab  # pylint: disable=g-import-not-at-top
  config = make_config()
  prepare.validate(config)
  parts = rec["parts"]
  with meter(parts.setdefault("simulate", {})):
    catalog, events = load_raw(config.data)
  with meter(parts.setdefault("write_prepared", {})):
    phases = Phases(parts, "write_prepared.")
    prepare.write_prepared(catalog, events, config, prepared_dir(), on_phase=phases,
                           sp_model=vocab.sentencepiece_model(config))
    phases.close()
  manifest = prepared.read_manifest(prepared_dir())
  rec["output"] = {"bytes": _dir_bytes(prepared_dir()), "files": len(manifest["files"]),
                   "counts": manifest["counts"]}


def stage_ids(rec: dict) -> None:
  from genret_jax.data import prepared  # pylint: disable=g-import-not-at-top
  from genret_jax.ids import build  # pylint: disable=g-import-not-at-top
  config = make_config()
  parts = rec["parts"]
  with meter(parts.setdefault("load_prepared", {})):
    ds = prepared.load(prepared_dir())
  rec["output"] = {}
  for scheme in SCHEMES:
    config.ids.scheme = scheme
    with meter(parts.setdefault(scheme, {})):
      ids, entry = build.build_identifiers(config, ds.catalog, ds.events, ds.split,
                                           _WORKDIR.value)
    rec["output"][scheme] = {
        "bytes": _dir_bytes(os.path.join(_WORKDIR.value, "ids", scheme)),
        "level_sizes": list(ids.search.level_sizes),
        "collision_rate": entry["collision_rate"],
        "collision_rate_after_dedup": entry["collision_rate_after_dedup"],
        "embedding_seconds": entry.get("embeddings", {}).get("semantic", {}).get("seconds")}


def _vocabulary(ids):
  from genret_jax.data import prepared  # pylint: disable=g-import-not-at-top
  from genret_jax.tasks.vocab import GenRetVocabulary  # pylint: disable=g-import-not-at-top
  return GenRetVocabulary(os.path.join(prepared_dir(), prepared.SP_MODEL), ids.extra_tokens())


def _trie(scheme: str, config):
  from genret_jax.decoding import trie as trie_lib  # pylint: disable=g-import-not-at-top
  from genret_jax.ids import build  # pylint: disable=g-import-not-at-top
  ids = build.load_identifiers(_WORKDIR.value, scheme)
  vocab = _vocabulary(ids)
  offsets = vocab.level_offsets(ids.search)
  t0 = time.perf_counter()
  trie = trie_lib.trie_from_id_table(ids.search, offsets,
                                     dense_max_mb=float(config.decode.dense_max_mb))
  return ids, vocab, trie, time.perf_counter() - t0


def stage_trie(rec: dict) -> None:
  from genret_jax.decoding import trie as trie_lib  # pylint: disable=g-import-not-at-top
  config = make_config()
  rec["output"] = {}
  for scheme in SCHEMES:
    with meter(rec["parts"].setdefault(scheme, {})):
      _, _, trie, build_s = _trie(scheme, config)
    rec["output"][scheme] = {
        "table_mb": round(trie.nbytes / 2**20, 2), "build_s": round(build_s, 3),
        "levels": ["dense" if isinstance(lv, trie_lib.DenseLevel) else "csr"
                   for lv in trie.levels],
        "widths": [int(lv.width) for lv in trie.levels], "leaves": trie.num_leaves,
        "max_dup": trie.max_dup}


def search_test_queries(limit: int) -> tuple[list[str], np.ndarray]:
  """(queries, target items) of the first `limit` search events of the prepared test split."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from genret_jax.data import prepared  # pylint: disable=g-import-not-at-top
  from genret_jax.data.schema import SEARCH  # pylint: disable=g-import-not-at-top
  files = sorted(tf.io.gfile.glob(prepared.split_patterns(prepared_dir())["test"]))
  feats = {k: prepared.EVENT_FEATURES[k] for k in ("behaviour", "query", "item")}
  ds = (tf.data.TFRecordDataset(files).map(lambda x: tf.io.parse_single_example(x, feats))
        .filter(lambda ex: tf.equal(ex["behaviour"], SEARCH)).take(limit))
  rows = list(ds.as_numpy_iterator())
  return ([r["query"].decode("utf-8") for r in rows],
          np.asarray([r["item"] for r in rows], np.int32))


def encode_search_inputs(vocab, queries: list[str], length: int) -> np.ndarray:
  """int32[Q, length]: the full search prompt, tokenized, EOS-terminated, 0-padded."""
  from genret_jax.tasks.kinds import KINDS  # pylint: disable=g-import-not-at-top
  from genret_jax.tasks.vocab import EOS_ID  # pylint: disable=g-import-not-at-top
  template = KINDS["search"].prompts["full"]
  out = np.zeros((len(queries), length), np.int32)
  for i, q in enumerate(queries):
    ids = list(vocab.encode(template.replace("{query}", q)))[:length - 1] + [EOS_ID]
    out[i, :len(ids)] = ids
  return out


LOGITS_LIMIT_GIB = 1.0


def check_logits_memory(vocab_size: int, level_sizes, batch: int, beam: int) -> None:
  """RuntimeError, before any allocation, when one step's logits would exceed LOGITS_LIMIT_GIB.

  Every decoding step holds float32 logits [batch x beam, vocab] and a few
  copies (log-softmax, masking): with a ~1M-token ID vocabulary (atomic IDs,
  or RQ-KMeans IDs whose dedup level is huge because most items share one
  prefix) that is 7 GiB per copy at batch 64 x beam 30, past 24 GiB in all.
  """
  from genret_jax.model import network  # pylint: disable=g-import-not-at-top
  gib = batch * beam * network.pad_vocab_size(vocab_size) * 4 / 2**30
  if gib > LOGITS_LIMIT_GIB:
    raise RuntimeError(
        f"decode: the vocabulary has {vocab_size:,} tokens (ID level sizes "
        f"{list(level_sizes)}): float32 logits [{batch} x {beam}, vocab] take "
        f"{gib:.1f} GiB per copy (limit {LOGITS_LIMIT_GIB} GiB); a last level this large "
        "means most items share one prefix (degenerate embeddings, see --semantic_features)")


def stage_decode(rec: dict) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from genret_jax.evaluation import generative  # pylint: disable=g-import-not-at-top
  config = make_config()
  parts = rec["parts"]
  with meter(parts.setdefault("trie_and_inputs", {})):
    ids, vocab, trie, _ = _trie("rq_kmeans", config)
    trie = jax.device_put(trie)
    queries, targets = search_test_queries(_QUERIES.value)
    if not queries:
      raise RuntimeError(f"{prepared_dir()}: no search events in the test split")
    inputs = encode_search_inputs(vocab, queries, _INPUT_LEN.value)
    check_logits_memory(vocab.vocab_size, ids.search.level_sizes, _BATCH.value, _BEAM.value)
    from genret_jax.bench import models  # pylint: disable=g-import-not-at-top
    module, params = models.tiger_like_model(vocab.vocab_size)

  def run(x):
    return generative.generate_items(module, params, x, lambda lo, hi, pad: trie,
                                     decode_config=config.decode, num_results=_BEAM.value)

  with meter(parts.setdefault("compile", {})):   # one batch: compiles search_jit
    run(inputs[:_BATCH.value])
  with meter(parts.setdefault("search", {})) as m:
    res = run(inputs)
  items = res["items"]
  num_items = ids.search.codes.shape[0]
  valid = items >= 0
  rec["output"] = {
      "queries": len(queries), "batch_size": _BATCH.value, "beam": _BEAM.value,
      "queries_per_s": round(len(queries) / m["wall_s"], 2),
      "items_per_query": float(valid.sum(1).mean()),
      "all_items_in_catalog": bool(((items < num_items) | ~valid).all()),
      "queries_with_results": float(valid.any(1).mean()),
      "target_in_results": float((items == targets[:, None]).any(1).mean()),
      "vocab_size": int(vocab.vocab_size), "backend": jax.default_backend(),
      "first_items": items[:2, :5].tolist()}
  rec["items"] = items.tolist() if len(queries) <= 256 else None


_RUN = {"prepare": stage_prepare, "ids": stage_ids, "trie": stage_trie, "decode": stage_decode}


def _import_all() -> float:
  """Imports what the stages use (TF, seqio, JAX, bm25s, ...) before any meter; seconds."""
  t0 = time.perf_counter()
  # pylint: disable=g-import-not-at-top,unused-import
  import bm25s
  import sklearn.decomposition
  import sklearn.feature_extraction.text
  from genret_jax.data import prepare, prepared, readers
  from genret_jax.decoding import trie
  from genret_jax.evaluation import generative
  from genret_jax.ids import build, embeddings, rq_kmeans
  from genret_jax.model import network
  from genret_jax.tasks import vocab
  # pylint: enable=g-import-not-at-top,unused-import
  return time.perf_counter() - t0


def run_stage(name: str) -> dict:
  """Runs one stage here; its record (parts, output and the stage's own meter).

  Imports come first and are not metered (`import_s`); `rss_start_mb` is the
  RSS with everything imported."""
  rec: dict = {"import_s": round(_import_all(), 2), "parts": {}}
  with meter(rec):
    _RUN[name](rec)
  return rec


def _in_subprocess(name: str) -> dict:
  args = [f"--{f.name}={f.value}" for f in _FORWARD]
  proc = subprocess.run([sys.executable, "-m", "genret_jax.bench.scale", f"--worker={name}"]
                        + args, stdout=subprocess.PIPE, text=True, check=False)
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if proc.returncode or not line:
    raise RuntimeError(f"stage {name} failed (exit {proc.returncode}); its output:\n"
                       + proc.stdout[-3000:])
  return json.loads(line[-1][len("RESULT "):])


def _output_text(name: str, out: dict) -> str:
  if name == "prepare":
    return f"{out['bytes'] / 2**30:.2f} GiB, {out['files']} files"
  if name == "ids":
    return "; ".join(f"{s} {o['bytes'] / 2**20:.1f} MB" for s, o in out.items())
  if name == "trie":
    return "; ".join(f"{s} {o['table_mb']:.1f} MB ({'/'.join(o['levels'])})"
                     for s, o in out.items())
  return f"{out['queries']} queries, {out['queries_per_s']:.1f} q/s"


def main(argv) -> None:
  del argv
  if _WORKER.value:
    rec = run_stage(_WORKER.value)
    rec["process_peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    rec["peak_rss_mb"] = max(rec["peak_rss_mb"], rec["process_peak_rss_mb"])
    print("RESULT " + json.dumps(rec), flush=True)
    return
  unknown = set(_STAGES.value) - set(STAGES)
  if unknown:
    raise app.UsageError(f"unknown stages {sorted(unknown)}; choose from {STAGES}")
  run = machine.Run.from_flags(also=("jax", "jaxlib"))   # the stages import them
  os.makedirs(_WORKDIR.value, exist_ok=True)
  res = {"config": {f.name: f.value for f in _FORWARD} | {
             "num_users": num_users(), "simulator": SIMULATOR,
             "in_process": _IN_PROCESS.value}, "stages": {}}
  t0 = time.perf_counter()
  for name in [s for s in STAGES if s in _STAGES.value]:
    print(f"stage {name} ...", flush=True)
    rec = run_stage(name) if _IN_PROCESS.value else _in_subprocess(name)
    res["stages"][name] = rec
    print(f"stage {name}: {rec['wall_s']:.1f} s wall, {rec['cpu_s']:.1f} s CPU, peak RSS "
          f"{rec['peak_rss_mb']:.0f} MB", flush=True)
    run.stamp(res, ratios=False)
    with open(_OUT.value, "w") as f:      # after every stage: a long run keeps its progress
      json.dump(res, f, indent=1)
  res["total_wall_s"] = round(time.perf_counter() - t0, 1)
  warnings = run.finish(res, ratios=False, path=_OUT.value)
  load = (res["machine"]["load_average_before"][0], res["machine"]["load_average_after"][0])
  print(f"\n{_ITEMS.value:,} items, {_EVENTS.value:,} events, {num_users():,} users; "
        f"load average {load[0]:.1f} -> {load[1]:.1f}\n")
  print("| stage | part | wall s | CPU s | peak RSS MB | RSS after MB | output |")
  print("|---|---|---:|---:|---:|---:|---|")
  for name, rec in res["stages"].items():
    print(f"| {name} | | {rec['wall_s']:.1f} | {rec['cpu_s']:.1f} | {rec['peak_rss_mb']:,.0f} "
          f"| {rec['rss_end_mb']:,.0f} | {_output_text(name, rec['output'])} |")
    for part, p in rec["parts"].items():
      print(f"| | {part} | {p['wall_s']:.1f} | {p['cpu_s']:.1f} | {p['peak_rss_mb']:,.0f} "
            f"| {p['rss_end_mb']:,.0f} | |")
  for line in warnings:
    print(line)


if __name__ == "__main__":
  app.run(main)
