"""Hugging Face T5 / Flan-T5 checkpoint directory -> our T5Config and parameters.

Reads `config.json` and the weights (`model.safetensors`, a sharded
`model.safetensors.index.json`, or `pytorch_model.bin` when torch is
importable) with numpy only (float32, float16 or bfloat16 tensors). Handles
T5 v1.1 / Flan-T5 (gated GELU, untied head, no output scaling) and the
original T5 (ReLU, head tied to the embedding with the decoder output scaled
by 1/sqrt(d_model)). The vocabulary
is padded with zero rows up to a multiple of 128.
"""

from __future__ import annotations

import json
import pathlib
import struct
from typing import Any, Callable

import ml_dtypes
import numpy as np

from genret_jax.errors import DataError
from genret_jax.model import network

# HF `dense_act_fn` -> our activation names (layers._ACTIVATIONS).
_HF_ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "relu": "relu",
                   "gelu": "gelu_exact", "silu": "silu", "swish": "silu"}

_REQUIRED_CONFIG_KEYS = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads")


def _read_config(path: pathlib.Path) -> dict[str, Any]:
  if not path.is_file():
    raise DataError(str(path), "missing: a Hugging Face T5 checkpoint directory needs config.json")
  try:
    hf = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise DataError(str(path), f"not valid JSON ({e.msg})", line=e.lineno) from e
  if not isinstance(hf, dict):
    raise DataError(str(path), "expected a JSON object")
  for key in _REQUIRED_CONFIG_KEYS:
    if key not in hf:
      raise DataError(str(path), "missing key of a T5 config", field=key)
  model_type = hf.get("model_type", "t5")
  if model_type != "t5":
    raise DataError(str(path), f"model_type {model_type!r} is not a T5 model", field="model_type")
  return hf


def hf_activations(hf: dict[str, Any], config_path: str) -> tuple[str, ...]:
  """`feed_forward_proj` ('relu', 'gated-gelu', 'gated-silu', ...) -> mlp_activations."""
  proj = str(hf.get("feed_forward_proj", "relu"))
  parts = proj.split("-")
  gated = len(parts) == 2 and parts[0] == "gated"
  if len(parts) > 2 or (len(parts) == 2 and not gated):
    raise DataError(config_path, f"unsupported value {proj!r}", field="feed_forward_proj")
  act = "gelu_new" if proj == "gated-gelu" else parts[-1]
  if act not in _HF_ACTIVATIONS:
    raise DataError(config_path, f"unsupported activation {act!r}", field="feed_forward_proj")
  ours = _HF_ACTIVATIONS[act]
  return (ours, "linear") if gated else (ours,)


# safetensors dtype codes -> numpy dtypes (bfloat16 via ml_dtypes, a jax dependency).
_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
                       "BF16": ml_dtypes.bfloat16}


def read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
  """All tensors of a .safetensors file as float32 numpy arrays.

  The format is an 8-byte little-endian header size, a JSON header
  {name: {dtype, shape, data_offsets}}, then the raw bytes. Reading it
  directly handles bfloat16 (which safetensors.numpy cannot) and needs no
  extra package.
  """
  if not path.is_file():
    raise DataError(str(path), "missing weights file")
  with open(path, "rb") as f:
    prefix = f.read(8)
    if len(prefix) != 8:
      raise DataError(str(path), "not a safetensors file (shorter than its header size)")
    (header_size,) = struct.unpack("<Q", prefix)
    try:
      header = json.loads(f.read(header_size))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise DataError(str(path), f"not a safetensors file (bad JSON header: {e})") from e
  data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_size)
  tensors = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
    if dtype is None:
      raise DataError(str(path), f"unsupported dtype {info.get('dtype')!r}", field=name)
    start, end = info["data_offsets"]
    shape = tuple(info["shape"])
    if end > data.shape[0] or (end - start) != np.dtype(dtype).itemsize * int(np.prod(shape)):
      raise DataError(str(path), f"data offsets {start}:{end} do not fit shape {shape} "
                      f"of {info['dtype']} (file truncated?)", field=name)
    array = np.frombuffer(data[start:end], dtype=dtype).reshape(shape)
    tensors[name] = array.astype(np.float32)
  return tensors


def _load_safetensors(files: list[pathlib.Path]) -> dict[str, np.ndarray]:
  weights: dict[str, np.ndarray] = {}
  for f in files:
    weights.update(read_safetensors(f))
  return weights


def _load_weights(directory: pathlib.Path) -> dict[str, np.ndarray]:
  single = directory / "model.safetensors"
  index = directory / "model.safetensors.index.json"
  torch_bin = directory / "pytorch_model.bin"
  if single.is_file():
    return _load_safetensors([single])
  if index.is_file():
    try:
      weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
      raise DataError(str(index), f"not a safetensors index with a weight_map ({e})") from e
    return _load_safetensors([directory / name for name in sorted(set(weight_map.values()))])
  if torch_bin.is_file():
    try:
      # torch is optional: only old-style pytorch_model.bin checkpoints need it.
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise DataError(str(torch_bin), "reading pytorch_model.bin needs torch, which is not "
                      "installed; convert the checkpoint to model.safetensors or install the "
                      "`test` extra") from e
    state = torch.load(str(torch_bin), map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in state.items()}
  raise DataError(str(directory), "no weights: expected model.safetensors, "
                  "model.safetensors.index.json or pytorch_model.bin")


class _Weights:
  """Checked access to the HF state dict as float32 numpy arrays."""

  def __init__(self, weights: dict[str, np.ndarray], source: str):
    self.weights = weights
    self.source = source

  def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in self.weights:
      raise DataError(self.source, "missing tensor", field=name)
    w = np.asarray(self.weights[name], np.float32)
    if w.shape != shape:
      raise DataError(self.source, f"shape {w.shape} does not match config.json {shape}",
                      field=name)
    return w


def _attention(w: _Weights, prefix: str, cfg: network.T5Config) -> dict[str, Any]:
  """HF q/k/v [H*D, E], o [E, H*D] (torch out x in) -> ours [E, H, D], [H, D, E]."""
  e, h, d = cfg.emb_dim, cfg.num_heads, cfg.head_dim
  out = {n: {"kernel": w.get(f"{prefix}.{hf}.weight", (h * d, e)).T.reshape(e, h, d)}
         for n, hf in (("query", "q"), ("key", "k"), ("value", "v"))}
  out["out"] = {"kernel": w.get(f"{prefix}.o.weight", (e, h * d)).T.reshape(h, d, e)}
  return out


def _mlp(w: _Weights, prefix: str, cfg: network.T5Config) -> dict[str, Any]:
  e, f = cfg.emb_dim, cfg.mlp_dim
  if len(cfg.mlp_activations) == 1:
    out = {"wi": {"kernel": w.get(f"{prefix}.wi.weight", (f, e)).T}}
  else:
    out = {f"wi_{i}": {"kernel": w.get(f"{prefix}.wi_{i}.weight", (f, e)).T}
           for i in range(len(cfg.mlp_activations))}
  out["wo"] = {"kernel": w.get(f"{prefix}.wo.weight", (e, f)).T}
  return out


def _scale(w: _Weights, name: str, cfg: network.T5Config) -> dict[str, np.ndarray]:
  return {"scale": w.get(name, (cfg.emb_dim,))}


def _relpos(w: _Weights, name: str, cfg: network.T5Config) -> dict[str, np.ndarray]:
  table = w.get(name, (cfg.relative_attention_num_buckets, cfg.num_heads))
  return {"rel_embedding": table.T}


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  return np.concatenate([x, np.zeros((rows - x.shape[0],) + x.shape[1:], x.dtype)], axis=0)


def convert_state_dict(hf_config: dict[str, Any], state: dict[str, np.ndarray], *,
                       source: str = "<state dict>", config_path: str = "config.json",
                       **overrides: Any) -> tuple[network.T5Config, dict[str, Any]]:
  """An HF T5 config dict + state dict -> (T5Config, params) (params float32 numpy)."""
  activations = hf_activations(hf_config, config_path)
  vocab = int(hf_config["vocab_size"])
  emb = int(hf_config["d_model"])
  # HF semantics: transformers >= 5 writes scale_decoder_outputs; older configs
  # scale exactly when tie_word_embeddings is not false (its default is true).
  scale_out = hf_config.get("scale_decoder_outputs",
                            hf_config.get("tie_word_embeddings", True) is not False)
  w = _Weights(state, source)
  shared = w.get("shared.weight", (vocab, emb))
  lm_head = w.get("lm_head.weight", (vocab, emb)) if "lm_head.weight" in state else shared
  tied = bool(scale_out) and np.array_equal(lm_head, shared)
  kwargs = dict(
      emb_dim=emb, num_heads=int(hf_config["num_heads"]), head_dim=int(hf_config["d_kv"]),
      mlp_dim=int(hf_config["d_ff"]), num_encoder_layers=int(hf_config["num_layers"]),
      num_decoder_layers=int(hf_config.get("num_decoder_layers") or hf_config["num_layers"]),
      relative_attention_num_buckets=int(hf_config.get("relative_attention_num_buckets", 32)),
      relative_attention_max_distance=int(hf_config.get("relative_attention_max_distance", 128)),
      dropout_rate=float(hf_config.get("dropout_rate", 0.1)),
      layer_norm_epsilon=float(hf_config.get("layer_norm_epsilon", 1e-6)),
      logits_via_embedding=tied, mlp_activations=activations)
  kwargs.update(overrides)
  cfg = network.T5Config(vocab_size=network.pad_vocab_size(vocab), **kwargs)

  def stack(side: str, num_layers: int, layer_fn: Callable[[str], dict[str, Any]]):
    out = {f"layers_{i}": layer_fn(f"{side}.block.{i}") for i in range(num_layers)}
    out["relpos_bias"] = _relpos(
        w, f"{side}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", cfg)
    return out

  encoder = stack("encoder", cfg.num_encoder_layers, lambda p: {
      "pre_attention_layer_norm": _scale(w, f"{p}.layer.0.layer_norm.weight", cfg),
      "attention": _attention(w, f"{p}.layer.0.SelfAttention", cfg),
      "pre_mlp_layer_norm": _scale(w, f"{p}.layer.1.layer_norm.weight", cfg),
      "mlp": _mlp(w, f"{p}.layer.1.DenseReluDense", cfg)})
  encoder["encoder_norm"] = _scale(w, "encoder.final_layer_norm.weight", cfg)
  decoder = stack("decoder", cfg.num_decoder_layers, lambda p: {
      "pre_self_attention_layer_norm": _scale(w, f"{p}.layer.0.layer_norm.weight", cfg),
      "self_attention": _attention(w, f"{p}.layer.0.SelfAttention", cfg),
      "pre_cross_attention_layer_norm": _scale(w, f"{p}.layer.1.layer_norm.weight", cfg),
      "encoder_decoder_attention": _attention(w, f"{p}.layer.1.EncDecAttention", cfg),
      "pre_mlp_layer_norm": _scale(w, f"{p}.layer.2.layer_norm.weight", cfg),
      "mlp": _mlp(w, f"{p}.layer.2.DenseReluDense", cfg)})
  decoder["decoder_norm"] = _scale(w, "decoder.final_layer_norm.weight", cfg)
  if not tied:
    head = lm_head * np.float32(emb ** -0.5) if scale_out else lm_head
    decoder["logits_dense"] = {"kernel": _pad_rows(head, cfg.vocab_size).T.copy()}
  params = {"token_embedder": {"embedding": _pad_rows(shared, cfg.vocab_size)},
            "encoder": encoder, "decoder": decoder}
  return cfg, params


def hf_vocab_size(directory: str | pathlib.Path) -> int:
  """The unpadded `vocab_size` of an HF checkpoint directory's config.json."""
  return int(_read_config(pathlib.Path(directory) / "config.json")["vocab_size"])


def load_hf_checkpoint(directory: str | pathlib.Path, **overrides: Any
                       ) -> tuple[network.T5Config, dict[str, Any], str | None]:
  """Loads an HF T5 / Flan-T5 checkpoint directory.

  Args:
    directory: holds config.json, the weights and optionally spiece.model.
    **overrides: T5Config fields to override (e.g. dtype, dropout_rate).

  Returns:
    (config, params, spiece_model_path or None). `params` is the 'params'
    collection as float32 numpy arrays, without logical-axis boxing.

  Raises:
    DataError: a missing directory/file/tensor, or a shape that does not match
      config.json.
  """
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    raise DataError(str(directory), "Hugging Face checkpoint directory does not exist")
  config_path = directory / "config.json"
  hf = _read_config(config_path)
  state = _load_weights(directory)
  cfg, params = convert_state_dict(hf, state, source=str(directory), config_path=str(config_path),
                                   **overrides)
  spiece = directory / "spiece.model"
  return cfg, params, str(spiece) if spiece.is_file() else None
