"""The one seqio Vocabulary: SentencePiece text + appended identifier/behaviour tokens.

Layout (T5 conventions): pad 0, eos 1, unk 2, then the SentencePiece pieces
(`[0, sp_size)`), then the appended tokens in order: the identifier tokens of
`ItemIdentifiers.extra_tokens()` (each level's codes contiguous), then the
behaviour tokens `<rec_item>`, `<src_query>`, `<src_item>`.

Encoding splits a string at substrings `<name>` that are appended tokens;
every other stretch of text goes through SentencePiece. The SentencePiece model
is used whitespace-exactly (no dummy prefix, no whitespace collapsing: the
normalizer spec is overridden on load), so `decode(encode(s)) == s` for any
text whose characters the model covers; text directly after an appended token
should start with a space to get the usual `▁word` pieces. Python and
TensorFlow give identical ids and strings.
"""

from __future__ import annotations

import io
import re
from typing import Callable, Sequence

import numpy as np
import seqio
import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text
from sentencepiece import sentencepiece_model_pb2

from genret_jax.errors import ConfigError
from genret_jax.ids.types import IdTable
from genret_jax.tasks import config as tasks_config
# The behaviour tokens live in the light kinds module; re-exported here.
from genret_jax.tasks.kinds import BEHAVIOUR_TOKENS, REC_ITEM, SRC_ITEM, SRC_QUERY  # noqa: F401

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
# What may be an appended token: `<` word characters `>`. Matches that are not
# appended tokens stay text (e.g. "<b>" in a description).
TOKEN_PATTERN = r"<[A-Za-z0-9_]+>"


def whitespace_exact_proto(model: bytes) -> bytes:
  """The SentencePiece model proto with dummy prefix and whitespace collapsing off."""
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(model)
  for spec in (proto.normalizer_spec, proto.denormalizer_spec):
    spec.add_dummy_prefix = False
    spec.remove_extra_whitespaces = False
  return proto.SerializeToString()


class GenRetVocabulary(seqio.Vocabulary):
  """SentencePiece + appended tokens, with `token_id` and `level_offsets`.

  Args:
    sp_model: path of a SentencePiece `.model` (pad 0, eos 1, unk 2), or its bytes.
    extra_tokens: identifier tokens to append (e.g. `ids.extra_tokens()`);
      the behaviour tokens are appended after them.
  """

  def __init__(self, sp_model: str | bytes, extra_tokens: Sequence[str] = ()):
    if isinstance(sp_model, str):
      with tf.io.gfile.GFile(sp_model, "rb") as f:
        sp_model = f.read()
    self._model = whitespace_exact_proto(sp_model)
    self._sp = spm.SentencePieceProcessor(model_proto=self._model)
    if (self._sp.pad_id(), self._sp.eos_id(), self._sp.unk_id()) != (PAD_ID, EOS_ID, UNK_ID):
      raise ValueError("SentencePiece model must use pad 0, eos 1, unk 2 (T5 conventions); got "
                       f"pad {self._sp.pad_id()}, eos {self._sp.eos_id()}, unk {self._sp.unk_id()}")
    self._sp_size = self._sp.get_piece_size()
    tokens = list(extra_tokens) + list(BEHAVIOUR_TOKENS)
    bad = [t for t in tokens if not re.fullmatch(TOKEN_PATTERN, t)]
    if bad:
      raise ValueError(f"appended tokens must look like <name>: {bad[:3]}")
    if len(set(tokens)) != len(tokens):
      raise ValueError("appended tokens are not unique")
    self._tokens = tuple(tokens)
    self._token_ids = {t: self._sp_size + i for i, t in enumerate(tokens)}
    self._tf_state = None
    super().__init__(extra_ids=0)

  # --- seqio.Vocabulary interface -------------------------------------------

  @property
  def eos_id(self) -> int:
    return EOS_ID

  @property
  def unk_id(self) -> int:
    return UNK_ID

  @property
  def pad_id(self) -> int:
    return PAD_ID

  @property
  def _base_vocab_size(self) -> int:
    return self._sp_size + len(self._tokens)

  @property
  def sp_size(self) -> int:
    """Number of SentencePiece ids; appended tokens start here."""
    return self._sp_size

  @property
  def appended_tokens(self) -> tuple[str, ...]:
    return self._tokens

  @property
  def sp_model(self) -> bytes:
    """The (whitespace-exact) SentencePiece model proto."""
    return self._model

  def _encode(self, s: str) -> list[int]:
    ids: list[int] = []
    for piece in re.split(f"({TOKEN_PATTERN})", s):
      if not piece:
        continue
      tid = self._token_ids.get(piece)
      ids.extend([tid] if tid is not None else self._sp.encode(piece))
    return ids

  def _decode(self, ids) -> str:
    out, run = [], []
    for i in ids:
      i = int(i)
      if i >= self._sp_size:
        if run:
          out.append(self._sp.decode(run))
          run = []
        out.append(self._tokens[i - self._sp_size])
      else:
        run.append(i)
    if run:
      out.append(self._sp.decode(run))
    return "".join(out)

  def _tf(self):
    """(token table, appended-token strings, SentencePiece tokenizer), built eagerly once."""
    if self._tf_state is None:
      with tf.init_scope():
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self._tokens),
                tf.constant([self._token_ids[t] for t in self._tokens], tf.int32)),
            default_value=-1)
        strings = tf.constant(self._tokens)
        tokenizer = tf_text.SentencepieceTokenizer(model=self._model, out_type=tf.int32)
      self._tf_state = (table, strings, tokenizer)
    return self._tf_state

  @tf.autograph.experimental.do_not_convert
  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """string[] -> int32[T]; string[B] -> ragged int32[B, None]."""
    s = tf.convert_to_tensor(s, tf.string)
    scalar = s.shape.rank == 0
    batch = tf.reshape(s, [-1]) if scalar else s
    table, _, tokenizer = self._tf()
    pieces = tf_text.regex_split(batch, TOKEN_PATTERN, TOKEN_PATTERN)   # [B, S]
    flat = pieces.flat_values
    appended = table.lookup(flat)
    is_appended = appended >= 0
    text_ids = tokenizer.tokenize(tf.where(is_appended, "", flat))      # [N, T]
    appended_ids = tf.RaggedTensor.from_row_lengths(
        tf.boolean_mask(appended, is_appended), tf.cast(is_appended, tf.int64), validate=False)
    per_piece = tf.concat([text_ids, appended_ids], axis=1)
    ids = pieces.with_flat_values(per_piece).merge_dims(1, 2)
    return ids[0] if scalar else ids

  @tf.autograph.experimental.do_not_convert
  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    """int32[..., T] -> string[...]: SentencePiece runs and appended tokens joined."""
    ids = tf.convert_to_tensor(ids, tf.int32)
    rank = ids.shape.rank
    if rank == 0:
      raise ValueError("decode_tf needs int32[..., T]")
    batch_shape = tf.shape(ids)[:-1]
    length = tf.shape(ids)[-1]
    flat = tf.reshape(ids, [-1])
    _, strings, tokenizer = self._tf()
    pos = tf.range(tf.size(flat))
    appended = flat >= self._sp_size
    prev_appended = tf.concat([[True], appended[:-1]], axis=0)
    row_start = tf.equal(tf.math.floormod(pos, tf.maximum(length, 1)), 0)
    start = row_start | appended | prev_appended
    segment = tf.cumsum(tf.cast(start, tf.int32)) - 1
    segments = tf.RaggedTensor.from_value_rowids(
        tf.where(appended, PAD_ID, flat), segment, validate=False)
    text = tokenizer.detokenize(segments)
    first = tf.boolean_mask(flat, start)
    seg_appended = tf.boolean_mask(appended, start)
    token_text = tf.gather(strings, tf.maximum(first - self._sp_size, 0))
    seg_text = tf.where(seg_appended, token_text, text)
    seg_row = tf.boolean_mask(pos // tf.maximum(length, 1), start)
    num_rows = tf.reduce_prod(batch_shape)
    out = tf.strings.unsorted_segment_join(seg_text, seg_row, num_rows)
    return tf.reshape(out, batch_shape)

  def __eq__(self, other) -> bool:
    return (isinstance(other, GenRetVocabulary) and self._model == other._model
            and self._tokens == other._tokens)

  def __hash__(self) -> int:
    return hash((self._model, self._tokens))

  # --- what the decoder and evaluator need ----------------------------------

  def token_id(self, token: str) -> int:
    """Vocabulary id of an appended token (identifier or behaviour token)."""
    try:
      return self._token_ids[token]
    except KeyError:
      raise KeyError(f"{token!r} is not an appended token of this vocabulary") from None

  def level_offsets(self, table: IdTable) -> np.ndarray:
    """int32[L]: the id of code 0 of each level; code k of level l is offset[l] + k."""
    offsets = []
    for prefix, size in zip(table.level_prefixes, table.level_sizes):
      first = self.token_id(f"<{prefix}_0>")
      if self.token_id(f"<{prefix}_{size - 1}>") != first + size - 1:
        raise ValueError(f"level {prefix} tokens are not contiguous in the vocabulary")
      offsets.append(first)
    return np.asarray(offsets, np.int32)

  def item_ids(self, table: IdTable) -> np.ndarray:
    """int32[num_items, L]: each item's identifier as vocabulary ids."""
    return (table.codes + self.level_offsets(table)[None, :]).astype(np.int32)


def train_sentencepiece(texts: Sequence[str], vocab_size: int) -> bytes:
  """Trains a whitespace-exact unigram SentencePiece model (pad 0, eos 1, unk 2).

  Each text is fed with a leading space so words get `▁word` pieces, as they
  do after an appended token. Deterministic (one thread). `vocab_size` is an
  upper bound on small corpora. Returns the model proto bytes.
  """
  writer = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter([" " + t for t in texts if t]), model_writer=writer,
      vocab_size=vocab_size, model_type="unigram", pad_id=PAD_ID, eos_id=EOS_ID,
      unk_id=UNK_ID, bos_id=-1, add_dummy_prefix=False, remove_extra_whitespaces=False,
      normalization_rule_name="identity", character_coverage=1.0, hard_vocab_limit=False,
      num_threads=1, minloglevel=2)
  return writer.getvalue()


def sentencepiece_model(config) -> Callable[[list[str]], bytes]:
  """The `sp_model` function of genret_jax.data.prepare for `config`: the bytes of
  `vocab.sp_model` when set, else a model of `vocab.sp_vocab_size` pieces trained on
  the corpus plus every prompt style's texts (so any style tokenizes its prompts)."""
  def build(corpus: list[str]) -> bytes:
    if config.vocab.sp_model:
      with open(config.vocab.sp_model, "rb") as f:
        return f.read()
    try:
      return train_sentencepiece(corpus + tasks_config.default_prompt_texts(),
                                 int(config.vocab.sp_vocab_size))
    except RuntimeError as e:
      raise ConfigError("vocab.sp_vocab_size", f"SentencePiece training failed: {e}") from None
  return build
