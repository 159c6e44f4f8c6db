"""TensorFlow formatting of prepared records into token `inputs` / `targets`.

What each task kind reads, which history it carries and its target are in the
registry `genret_jax.tasks.kinds.KINDS`; this module turns them into tokens.
History elements (oldest first, joined by the separator):
  history "rec"      `<item ID>`                                    (rec table)
  history "gensar"   rec event    `<rec_item><rec ID>`
                     search event `<src_query> {query} <src_item><search ID>`
Without behaviour tokens (`tasks.behaviour_tokens = False`, GenSAR's ablation)
every `<rec_item>` / `<src_query>` / `<src_item>` is dropped: history elements
`<rec ID>` and `{query} <search ID>`, and targets and the alignment tasks' items
without them.
The input is the prompt template with its fields filled; when it would exceed
the input length, the oldest history elements are dropped (whole elements), so
the prompt, the query and the most recent history always survive.
"""

from __future__ import annotations

import string

import numpy as np
import tensorflow as tf

from genret_jax.data.schema import REC
from genret_jax.ids.types import IdTable
from genret_jax.tasks.kinds import KINDS, REC_ITEM, SRC_ITEM, SRC_QUERY
from genret_jax.tasks.vocab import GenRetVocabulary


def template_fields(template: str) -> list[str]:
  """The placeholder names of a template, in order (raises ValueError on bad syntax)."""
  return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def id_strings(table: IdTable) -> np.ndarray:
  """str[num_items]: each item's identifier tokens concatenated, e.g. '<c0_3><c1_17>'."""
  out = np.full(table.codes.shape[0], "", dtype=object)
  for level, prefix in enumerate(table.level_prefixes):
    out = out + f"<{prefix}_" + table.codes[:, level].astype(str).astype(object) + ">"
  return out.astype(str)


def _fill(template: str, fields: dict[str, tf.Tensor]) -> tf.Tensor:
  """string[]: `template` with its placeholders replaced by scalar string tensors."""
  parts = []
  for literal, name, _, _ in string.Formatter().parse(template):
    if literal:
      parts.append(tf.constant(literal))
    if name is not None:
      parts.append(fields[name])
  return tf.strings.join(parts) if parts else tf.constant("")


def _part_tokens(vocab: GenRetVocabulary, part: str, fields: dict[str, tf.Tensor]) -> tf.Tensor:
  """int32[T] tokens of a template part: a constant when it has no placeholder."""
  if not template_fields(part):
    return tf.constant(vocab.encode(part), tf.int32, shape=[len(vocab.encode(part))])
  return vocab.encode_tf(_fill(part, fields))


def render_inputs(vocab: GenRetVocabulary, template: str, fields: dict[str, tf.Tensor],
                  history: tf.RaggedTensor | None, max_length: int
                  ) -> tuple[tf.Tensor, tf.Tensor]:
  """Tokenized prompt, keeping the most recent history elements that fit.

  Args:
    vocab: the vocabulary.
    template: the prompt, with at most one {history}.
    fields: placeholder name -> string[] (everything but history).
    history: ragged int32[h, None], each history element's tokens (separator included),
      oldest first; None when unused.
    max_length: token budget of the whole input, EOS excluded.
  Returns:
    (int32[T] input ids, int32[] number of history elements kept).
  """
  if history is None or "{history}" not in template:
    return _part_tokens(vocab, template, fields), tf.constant(0, tf.int32)
  before, after = template.split("{history}", 1)
  prefix = _part_tokens(vocab, before, fields)
  suffix = _part_tokens(vocab, after, fields)
  h = history.nrows(out_type=tf.int32)
  budget = max_length - tf.size(prefix) - tf.size(suffix)
  from_end = tf.cumsum(tf.reverse(history.row_lengths(), [0]))
  kept = tf.reduce_sum(tf.cast(from_end <= tf.cast(budget, from_end.dtype), tf.int32))
  tokens = history[h - kept:].flat_values
  return tf.concat([prefix, tokens, suffix], 0), kept


def _ragged_constant(rows: list[list[int]]) -> tf.RaggedTensor:
  lengths = [len(r) for r in rows]
  values = [t for r in rows for t in r]
  return tf.RaggedTensor.from_row_lengths(tf.constant(values, tf.int32, shape=[len(values)]),
                                          tf.constant(lengths, tf.int64), validate=False)


class Formatter:
  """Builds the per-example map functions of every task kind for one ID table pair.

  History elements are assembled from precomputed token ids (identifier tokens
  per item, SentencePiece tokens per distinct query), which equals tokenizing
  the element strings: text is only ever split at appended tokens.
  """

  def __init__(self, vocab: GenRetVocabulary, search: IdTable, rec: IdTable, prompts: dict,
               separator: str, default_input_length: int, queries: list[str],
               behaviour_tokens: bool = True):
    self.vocab = vocab
    self.behaviour_tokens = bool(behaviour_tokens)
    self.prompts = dict(prompts)
    self.default_input_length = default_input_length
    self.num_items = search.codes.shape[0]
    self.num_queries = len(queries)
    self.tok = {t: vocab.token_id(t) for t in (REC_ITEM, SRC_QUERY, SRC_ITEM)}
    self.sep = vocab.encode(separator)
    with tf.init_scope():
      self.search_ids = tf.constant(id_strings(search))
      self.rec_ids = tf.constant(id_strings(rec))
      # rows [0, N): rec identifiers; rows [N, 2N): search identifiers.
      self.id_tokens = _ragged_constant(vocab.item_ids(rec).tolist()
                                        + vocab.item_ids(search).tolist())
      # row q: tokens of " {query} " (after <src_query>; "{query} " without behaviour
      # tokens); row Q: nothing (rec events).
      pattern = " {} " if self.behaviour_tokens else "{} "
      self.query_tokens = _ragged_constant([vocab.encode(pattern.format(q)) for q in queries]
                                           + [[]])
      # A table needs a key: without search events, one no query can equal (a query
      # is non-empty text), mapped to the default.
      keys = list(queries) or [""]
      values = list(range(len(queries))) or [-1]
      self.query_index = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(
              tf.constant(keys, tf.string, shape=[len(keys)]),
              tf.constant(values, tf.int64, shape=[len(values)])), default_value=-1)

  def _input_length(self, sequence_length) -> int:
    if sequence_length and sequence_length.get("inputs"):
      return int(sequence_length["inputs"]) - 1
    return self.default_input_length - 1

  def _separators(self, h: tf.Tensor) -> tf.RaggedTensor:
    n = len(self.sep)
    lengths = tf.where(tf.range(h) < h - 1, n, 0)
    values = tf.tile(tf.constant(self.sep, tf.int32, shape=[n]), [tf.maximum(h - 1, 0)])
    return tf.RaggedTensor.from_row_lengths(values, tf.cast(lengths, tf.int64), validate=False)

  def _rec_history(self, ex) -> tf.RaggedTensor:
    items = ex["rec_hist_item"]
    ids = tf.gather(self.id_tokens, items)
    return tf.concat([ids, self._separators(tf.size(items, tf.int32))], axis=1)

  def _gensar_history(self, ex) -> tf.RaggedTensor:
    items = ex["hist_item"]
    h = tf.size(items, tf.int32)
    is_rec = tf.equal(ex["hist_behaviour"], REC)
    head = tf.RaggedTensor.from_tensor(tf.where(
        is_rec, self.tok[REC_ITEM], self.tok[SRC_QUERY])[:, None][:, :self._num_behaviour])
    query_row = self.query_index.lookup(ex["hist_query"])
    check = tf.debugging.assert_non_negative(
        tf.where(is_rec, tf.zeros_like(query_row), query_row),
        message="history query missing from the prepared dataset's queries.json")
    with tf.control_dependencies([check]):
      query_row = tf.where(is_rec, tf.cast(self.num_queries, tf.int64), query_row)
    query = tf.gather(self.query_tokens, query_row)
    not_rec = 1 - tf.cast(is_rec, tf.int64)
    with_mid = not_rec * self._num_behaviour        # <src_item> after a search query
    mid = tf.RaggedTensor.from_row_lengths(
        tf.fill([tf.reduce_sum(tf.cast(with_mid, tf.int32))], self.tok[SRC_ITEM]), with_mid,
        validate=False)
    ids = tf.gather(self.id_tokens, items + self.num_items * not_rec)
    return tf.concat([head, query, mid, ids, self._separators(h)], axis=1)

  @property
  def _num_behaviour(self) -> int:
    """1 when behaviour tokens are written, else 0 (a slice length)."""
    return int(self.behaviour_tokens)

  def _behaviour(self, token: str) -> list[int]:
    """The token id as a 1-element list, or [] without behaviour tokens."""
    return [self.tok[token]] if self.behaviour_tokens else []

  # Token helpers of the kinds' targets (genret_jax.tasks.kinds).

  def rec_id_tokens(self, item: tf.Tensor) -> tf.Tensor:
    """int32[L]: the rec-table identifier tokens of item (int64[] index)."""
    return self.id_tokens[item]

  def search_id_tokens(self, item: tf.Tensor) -> tf.Tensor:
    """int32[L]: the search-table identifier tokens of item (int64[] index)."""
    return self.id_tokens[item + self.num_items]

  def with_behaviour(self, token: str, tokens: tf.Tensor) -> tf.Tensor:
    """int32[1 + T]: behaviour `token` then int32[T] `tokens`; `tokens` alone without
    behaviour tokens."""
    num_b = self._num_behaviour
    return tf.concat([tf.constant(self._behaviour(token), tf.int32, [num_b]), tokens], 0)

  def query_text_tokens(self, query: tf.Tensor) -> tf.Tensor:
    """int32[T]: query (string[]) as it follows `<src_query>`: ' {query}' (with a
    leading space; '{query}' without behaviour tokens)."""
    return self.vocab.encode_tf((" " + query) if self.behaviour_tokens else query)

  def text_tokens(self, text: tf.Tensor) -> tf.Tensor:
    """int32[T]: text (string[]) tokenized as is (appended tokens included)."""
    return self.vocab.encode_tf(text)

  def event_fn(self, kind: str, sequence_length=None):
    """Map fn: prepared event record -> {inputs, targets, target_item, candidates, ...}
    for the event kind `kind` of KINDS (its history and target)."""
    spec = KINDS[kind]
    if spec.source != "events":
      raise ValueError(f"not an event task kind: {kind}")
    history_fn = {"rec": self._rec_history, "gensar": self._gensar_history,
                  None: lambda ex: None}[spec.history]
    max_len = self._input_length(sequence_length)
    template = self.prompts[kind]

    @tf.autograph.experimental.do_not_convert
    def fn(ex):
      item = ex["item"]
      history, target = history_fn(ex), spec.target(self, ex)
      inputs, kept = render_inputs(self.vocab, template, {"query": ex["query"]}, history,
                                   max_len)
      return {
          "inputs": inputs, "targets": target,
          "target_item": tf.cast(item, tf.int32), "user": tf.cast(ex["user"], tf.int32),
          "event": tf.cast(ex["event"], tf.int32),
          "candidates": tf.cast(ex["candidates"], tf.int32),
          "history_length": kept,
      }
    return fn

  def item_fn(self, kind: str, role: str, sequence_length=None):
    """Map fn: prepared item record -> {inputs, targets, target_item} for the item kind
    `kind` of KINDS over the `role` ('search' | 'rec') ID table.

    The template's {item} and the record's added `identifier` (what the target may
    use) are the item's identifier in that table, its behaviour token first.
    """
    spec = KINDS[kind]
    if spec.source != "items":
      raise ValueError(f"not an item task kind: {kind}")
    max_len = self._input_length(sequence_length)
    table = self.search_ids if role == "search" else self.rec_ids
    token = (SRC_ITEM if role == "search" else REC_ITEM) if self.behaviour_tokens else ""
    template = self.prompts[kind]

    @tf.autograph.experimental.do_not_convert
    def fn(ex):
      ident = token + tf.gather(table, ex["item"])
      inputs, _ = render_inputs(self.vocab, template, {"content": ex["text"], "item": ident},
                                None, max_len)
      return {"inputs": inputs, "targets": spec.target(self, {**ex, "identifier": ident}),
              "target_item": tf.cast(ex["item"], tf.int32)}
    return fn
