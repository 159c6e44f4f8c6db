"""Defaults of the `model` and `mesh` config blocks (owned by genret_jax.model).

Pure Python (no jax): importing the config stays cheap.
"""

from typing import Any

import ml_collections

from genret_jax.errors import ConfigError

MESH_AXES = ("data", "model")

# The logical axis names the T5 gives its parameters and activations
# (genret_jax.model.layers / attention / network).
LOGICAL_AXES = ("batch", "vocab", "mlp", "heads", "joined_kv", "kv", "embed", "length",
                "relpos_buckets")

# (logical axis, mesh axis or None = replicated), in order of precedence: T5X's
# standard rules. The default of `mesh.logical_axis_rules`.
LOGICAL_AXIS_RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("joined_kv", "model"),
    ("kv", None),
    ("embed", None),
    ("length", None),
    ("relpos_buckets", None),
)

# `model` keys that override one dimension of `model.size` when > 0 (T5Config fields).
DIM_KEYS = ("num_encoder_layers", "num_decoder_layers", "emb_dim", "num_heads", "head_dim",
            "mlp_dim")


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.size = "tiny"             # tiny | small | base | large | "" (every dimension key set)
  # Per-dimension overrides of the size's values (DIM_KEYS); 0 = the size's value.
  # E.g. TIGER (configs/tiger.py): 4 + 4 layers, emb_dim 128, 6 heads x 64, mlp 1024.
  c.num_encoder_layers = 0
  c.num_decoder_layers = 0
  c.emb_dim = 0               # d_model
  c.num_heads = 0
  c.head_dim = 0              # per head; num_heads * head_dim need not equal emb_dim
  c.mlp_dim = 0               # feed-forward hidden size (each of the two gated inputs)
  c.dtype = "float32"         # activation dtype: float32 | bfloat16
  c.dropout_rate = 0.0        # paper scale: 0.1 (T5's)
  c.attention_dropout_bits = 16  # random bits per attention-weight dropout draw: 16
                                 # (half the hashing; rate within 2^-17) | 32 (T5X's)
  c.logits_via_embedding = False  # tie the output head to the embedding (original T5)
  c.hf_checkpoint = ""        # HF T5/Flan-T5 directory to initialise from; its
                              # architecture then replaces size/logits_via_embedding
  return c


def mesh_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.data = -1                 # batch parallelism; -1 = all remaining devices
  c.model = 1                 # tensor parallelism over heads / mlp / vocab
  # (logical axis, 'data' | 'model' | None) pairs, first match wins (flax / T5X);
  # e.g. --config.mesh.logical_axis_rules="(('batch', 'data'), ('vocab', None), ...)"
  c.logical_axis_rules = LOGICAL_AXIS_RULES
  return c


def logical_axis_rules(mesh_cfg: Any) -> tuple[tuple[str, str | None], ...]:
  """The validated `mesh.logical_axis_rules` (LOGICAL_AXIS_RULES when the key is absent).

  Returns:
    A tuple of (logical axis, mesh axis or None) pairs.
  Raises:
    ConfigError naming `mesh.logical_axis_rules`: not a sequence of pairs, a
    logical axis the model does not use, or a mesh axis not in MESH_AXES / None.
  """
  rules = mesh_cfg.get("logical_axis_rules", LOGICAL_AXIS_RULES)
  key = "mesh.logical_axis_rules"
  if isinstance(rules, str) or not isinstance(rules, (tuple, list)) or not rules:
    raise ConfigError(key, f"must be a non-empty sequence of (logical axis, mesh axis) "
                      f"pairs, got {rules!r}")
  out = []
  for rule in rules:
    if isinstance(rule, str) or not isinstance(rule, (tuple, list)) or len(rule) != 2:
      raise ConfigError(key, f"{rule!r} is not a (logical axis, mesh axis) pair")
    logical, mesh_axis = rule
    if logical not in LOGICAL_AXES:
      raise ConfigError(key, f"{logical!r} is not a logical axis of the model; choose from "
                        f"{', '.join(LOGICAL_AXES)}")
    if mesh_axis is not None and mesh_axis not in MESH_AXES:
      raise ConfigError(key, f"{logical!r} maps to {mesh_axis!r}, not one of "
                        f"{', '.join(MESH_AXES)} or None (replicated)")
    out.append((str(logical), mesh_axis))
  return tuple(out)
