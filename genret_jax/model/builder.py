"""The `model` config block -> T5Config, and pretrained (HF) parameters for it."""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from genret_jax.errors import ConfigError
from genret_jax.model import config as model_config
from genret_jax.model import hf_convert, network

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _dtype(model_cfg: Any) -> Any:
  if model_cfg.dtype not in _DTYPES:
    raise ConfigError("model.dtype", f"{model_cfg.dtype!r} is not one of {sorted(_DTYPES)}")
  return _DTYPES[model_cfg.dtype]


def _dropout(model_cfg: Any) -> float:
  rate = model_cfg.dropout_rate
  if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
    raise ConfigError("model.dropout_rate", f"must be in [0, 1), got {rate!r}")
  return float(rate)


def _dropout_bits(model_cfg: Any) -> int:
  bits = model_cfg.attention_dropout_bits
  if isinstance(bits, bool) or bits not in (16, 32):
    raise ConfigError("model.attention_dropout_bits", f"must be 16 or 32, got {bits!r}")
  return int(bits)


def dim_overrides(model_cfg: Any) -> dict[str, int]:
  """{T5Config field: value} of the `model` dimension keys set (> 0).

  Raises:
    ConfigError: a dimension key that is not a non-negative integer.
  """
  out = {}
  for key in model_config.DIM_KEYS:
    value = model_cfg.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
      raise ConfigError(f"model.{key}",
                        f"must be an integer >= 0 (0 = the size's value), got {value!r}")
    if value > 0:
      out[key] = int(value)
  return out


def _size(model_cfg: Any, dims: dict[str, int]) -> str | None:
  """`model.size`, or None for '' when every dimension key is set."""
  if model_cfg.size == "":
    missing = [k for k in model_config.DIM_KEYS if k not in dims]
    if missing:
      raise ConfigError("model.size", f"'' needs every dimension key set (> 0); "
                        f"{', '.join('model.' + k for k in missing)} missing")
    return None
  if model_cfg.size not in network.SIZES:
    raise ConfigError("model.size", f"{model_cfg.size!r} is not one of "
                      f"{', '.join(network.SIZES)} (or '' with every dimension key set)")
  return model_cfg.size


def t5_config_from_block(model_cfg: Any, vocab_size: int) -> network.T5Config:
  """T5Config of `model.size` for a vocabulary of `vocab_size` (padded to 128s),
  with each dimension key (`model.emb_dim`, `model.num_heads`, ...) that is > 0
  replacing the size's value (`model.size` '' when all six are set).

  Raises:
    ConfigError: an unknown size or dtype, a dropout rate outside [0, 1),
      attention_dropout_bits not 16 or 32, or a negative / non-integer
      dimension key.
  """
  dims = dim_overrides(model_cfg)
  return network.t5_config(_size(model_cfg, dims), vocab_size, dtype=_dtype(model_cfg),
                           dropout_rate=_dropout(model_cfg),
                           attention_dropout_bits=_dropout_bits(model_cfg),
                           logits_via_embedding=bool(model_cfg.logits_via_embedding),
                           **dims)


def validate(model_cfg: Any) -> None:
  """ConfigError naming the first bad `model` key, checked before any work (size,
  dtype, dropout, dimension keys; with `hf_checkpoint`, that it is a folder and no
  dimension key is set)."""
  if model_cfg.hf_checkpoint:
    if not os.path.isdir(model_cfg.hf_checkpoint):
      raise ConfigError("model.hf_checkpoint", f"{model_cfg.hf_checkpoint!r} is not a folder "
                        "(a Hugging Face T5 checkpoint directory)")
    dims = dim_overrides(model_cfg)
    if dims:
      key = next(iter(dims))
      raise ConfigError(f"model.{key}", f"is {dims[key]} but model.hf_checkpoint fixes the "
                        "dimensions; leave it at 0")
  t5_config_from_block(model_cfg, 128)


def resize_vocab(cfg: network.T5Config, params: dict[str, Any], vocab_size: int,
                 known_rows: int, seed: int = 0) -> tuple[network.T5Config, dict[str, Any]]:
  """Resizes the embedding (and untied head) to pad_vocab_size(vocab_size) rows.

  `known_rows`: how many leading rows of the tables are real tokens (the
  checkpoint's unpadded vocab_size); the rest is padding and is replaced.

  Rows of tokens the checkpoint does not know (e.g. item-ID tokens) are drawn
  from a normal with the per-dimension mean and std of the existing rows, so
  they start on the scale of the trained ones. Rows at and beyond `vocab_size`
  in a larger checkpoint are dropped (the vocabulary never produces them).
  Numpy in, numpy out; deterministic in `seed`.
  """
  rows = network.pad_vocab_size(vocab_size)
  rng = np.random.default_rng(seed)

  def resize(table: np.ndarray, known: int) -> np.ndarray:
    """table [old_rows, E]; `known` rows hold real tokens."""
    keep = table[:min(known, vocab_size)]
    mean, std = keep.mean(axis=0), keep.std(axis=0)
    new = (mean + std * rng.standard_normal((rows - keep.shape[0], table.shape[1])))
    return np.concatenate([keep, new.astype(table.dtype)], axis=0)

  params = dict(params)
  known = known_rows
  params["token_embedder"] = {"embedding": resize(
      np.asarray(params["token_embedder"]["embedding"]), known)}
  if not cfg.logits_via_embedding:
    decoder = dict(params["decoder"])
    head = np.asarray(decoder["logits_dense"]["kernel"]).T
    decoder["logits_dense"] = {"kernel": resize(head, known).T.copy()}
    params["decoder"] = decoder
  fields = {f: getattr(cfg, f) for f in cfg.__dataclass_fields__ if f != "vocab_size"}
  return network.T5Config(vocab_size=rows, **fields), params


def load_pretrained(model_cfg: Any, vocab_size: int, seed: int = 0
                    ) -> tuple[network.T5Config, dict[str, Any], str | None]:
  """Loads `model.hf_checkpoint` for a vocabulary of `vocab_size` tokens.

  The architecture comes from the checkpoint (`model.size` and
  `model.logits_via_embedding` are ignored); `model.dtype`,
  `model.dropout_rate` and `model.attention_dropout_bits` apply. Returns
  (config, params as numpy float32, spiece.model path or None).

  Raises:
    ConfigError: `model.hf_checkpoint` is empty, a bad dtype / dropout, or a
      dimension key set (> 0): the checkpoint fixes the dimensions.
    DataError: a missing or inconsistent checkpoint (see hf_convert).
  """
  if not model_cfg.hf_checkpoint:
    raise ConfigError("model.hf_checkpoint", "is empty: no checkpoint to load")
  dims = dim_overrides(model_cfg)
  if dims:
    key = next(iter(dims))
    raise ConfigError(f"model.{key}", f"is {dims[key]} but model.hf_checkpoint fixes the "
                      "dimensions; leave it at 0")
  cfg, params, spiece = hf_convert.load_hf_checkpoint(
      model_cfg.hf_checkpoint, dtype=_dtype(model_cfg), dropout_rate=_dropout(model_cfg),
      attention_dropout_bits=_dropout_bits(model_cfg))
  known = hf_convert.hf_vocab_size(model_cfg.hf_checkpoint)
  cfg, params = resize_vocab(cfg, params, vocab_size, known, seed)
  return cfg, params, spiece
