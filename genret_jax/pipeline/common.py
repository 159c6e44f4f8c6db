"""Shared pieces of the main job: logging, stamps, barriers, model names and folders.

A step is skipped when the stamp (a SHA-256 of every setting its output
depends on) stored beside its output matches; otherwise it reruns and
rewrites the output atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any

import jax
from jax.experimental import multihost_utils
import ml_collections

from genret_jax import cache
from genret_jax.config import JOB_KEYS
from genret_jax.errors import ConfigError, brief

MODEL_NAMES = {"rec_only": "Gen_R", "search_only": "Gen_S", "joint": "Gen_R+S",
               "gensar": "GenSAR"}


def log(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


def is_writer() -> bool:
  """Only process 0 writes shared files (reports, plots, data)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """All processes wait here (a no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def stamp(*parts: Any) -> str:
  """SHA-256 hex of the JSON of `parts` (ConfigDicts as dicts)."""
  def plain(x):
    if isinstance(x, ml_collections.ConfigDict):
      return x.to_dict()
    return x
  text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()


def model_stamp(config: ml_collections.ConfigDict) -> str:
  """Stamp of everything a trained model depends on (not the job lists)."""
  d = config.to_dict()
  for k in JOB_KEYS:
    d.pop(k, None)
  d.pop("analysis", None)
  return stamp(d)


def write_json(path: str, blob: Any) -> None:
  """Atomic JSON write (tmp file + rename in the same folder)."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp_")
  with os.fdopen(fd, "w") as f:
    json.dump(blob, f, indent=1, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def read_json_or_none(path: str) -> Any | None:
  """The JSON in `path`; None when absent, or (with a warning) unreadable or cut off."""
  if not os.path.lexists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError, RecursionError) as e:
    cache.warn(f"{path}: unreadable ({brief(e)}); recomputing it")
    return None


def read_stamped(path: str, want: str) -> Any | None:
  """The 'value' of a `write_stamped` file when its stamp is `want`, else None (an
  unreadable or cut-off file too, with a warning: the step reruns)."""
  blob = read_json_or_none(path)
  if not isinstance(blob, dict):
    return None
  return blob.get("value") if blob.get("stamp") == want else None


def write_stamped(path: str, want: str, value: Any) -> None:
  write_json(path, {"stamp": want, "value": value})


def display_name(label: str) -> str:
  return MODEL_NAMES.get(label, label)


def model_dir(workdir: str, label: str) -> str:
  return os.path.join(workdir, "models", label)


def enable_compilation_cache(config: ml_collections.ConfigDict, workdir: str) -> str | None:
  """Points JAX's persistent compilation cache at workdir/config.jax_cache_dir.

  Call before anything compiles (genret_jax.main does). Returns the folder in
  use, or None when caching is off ('' and no JAX_COMPILATION_CACHE_DIR). A
  cache folder set in the environment wins.
  """
  current = jax.config.jax_compilation_cache_dir
  if current or not config.jax_cache_dir:
    return current or None
  path = os.path.join(workdir, os.path.expanduser(config.jax_cache_dir))
  jax.config.update("jax_compilation_cache_dir", path)
  return path
