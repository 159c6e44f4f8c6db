"""TensorFlow formatting of prepared records into token `inputs` / `targets`.

History elements (oldest first, joined by the separator):
  rec tasks      `<item ID>`                                       (rec table)
  GenSAR tasks   rec event    `<rec_item><rec ID>`
                 search event `<src_query> {query} <src_item><search ID>`
Targets:
  rec `<rec ID>`; search `<search ID>`; gensar_rec `<rec_item><rec ID>`;
  gensar_search `<src_item><search ID>`; next_query `<src_query> {query}`;
  text2id `<src_item><search ID>` (and `<rec_item><rec ID>` for text2id_rec);
  id2text `{content}`.
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
from genret_jax.tasks.vocab import REC_ITEM, SRC_ITEM, SRC_QUERY, GenRetVocabulary

# Placeholders each kind's template must / may contain.
REQUIRED_FIELDS = {
    "rec": {"history"}, "search": {"query"}, "gensar_rec": {"history"},
    "gensar_search": {"history", "query"}, "next_query": {"history"},
    "text2id": {"content"}, "id2text": {"item"},
}
ALLOWED_FIELDS = {
    "rec": {"history"}, "search": {"query"}, "gensar_rec": {"history"},
    "gensar_search": {"history", "query"}, "next_query": {"history"},
    "text2id": {"content"}, "id2text": {"item", "content"},
}


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


def render_inputs(vocab: GenRetVocabulary, template: str, fields: dict[str, tf.Tensor],
                  history: tf.Tensor | None, separator: str, max_length: int
                  ) -> tuple[tf.Tensor, tf.Tensor]:
  """Tokenized prompt, keeping the most recent history elements that fit.

  Args:
    vocab: the vocabulary.
    template: the prompt, with at most one {history}.
    fields: placeholder name -> string[] (everything but history).
    history: string[h] history elements, oldest first (None when unused).
    separator: put between elements.
    max_length: token budget of the whole input, EOS excluded.
  Returns:
    (int32[T] input ids, int32[] number of history elements kept).
  """
  if history is None or "{history}" not in template:
    return vocab.encode_tf(_fill(template, fields)), tf.constant(0, tf.int32)
  before, after = template.split("{history}", 1)
  prefix = vocab.encode_tf(_fill(before, fields))
  suffix = vocab.encode_tf(_fill(after, fields))
  h = tf.size(history)
  seps = tf.where(tf.range(h) < h - 1, separator, "")
  elements = vocab.encode_tf(tf.strings.join([history, seps]))       # ragged [h, t]
  budget = max_length - tf.size(prefix) - tf.size(suffix)
  from_end = tf.cumsum(tf.reverse(elements.row_lengths(), [0]))
  kept = tf.reduce_sum(tf.cast(from_end <= tf.cast(budget, from_end.dtype), tf.int32))
  tokens = elements[h - kept:].flat_values
  return tf.concat([prefix, tokens, suffix], 0), kept


class Formatter:
  """Builds the per-example map functions of every task kind for one ID table pair."""

  def __init__(self, vocab: GenRetVocabulary, search: IdTable, rec: IdTable, prompts: dict,
               separator: str, default_input_length: int):
    self.vocab = vocab
    self.prompts = dict(prompts)
    self.separator = separator
    self.default_input_length = default_input_length
    with tf.init_scope():
      self.search_ids = tf.constant(id_strings(search))
      self.rec_ids = tf.constant(id_strings(rec))

  def _input_length(self, sequence_length) -> int:
    if sequence_length and sequence_length.get("inputs"):
      return int(sequence_length["inputs"]) - 1
    return self.default_input_length - 1

  def _gensar_history(self, ex) -> tf.Tensor:
    items = ex["hist_item"]
    rec = REC_ITEM + tf.gather(self.rec_ids, items)
    search = tf.strings.join([SRC_QUERY + " ", ex["hist_query"], " " + SRC_ITEM,
                              tf.gather(self.search_ids, items)])
    return tf.where(tf.equal(ex["hist_behaviour"], REC), rec, search)

  def event_fn(self, kind: str, sequence_length=None):
    """Map fn: prepared event record -> {inputs, targets, target_item, candidates, ...}."""
    max_len = self._input_length(sequence_length)
    template = self.prompts[kind]

    @tf.autograph.experimental.do_not_convert
    def fn(ex):
      item = ex["item"]
      if kind == "rec":
        history = tf.gather(self.rec_ids, ex["rec_hist_item"])
        target = tf.gather(self.rec_ids, item)
      elif kind == "search":
        history, target = None, tf.gather(self.search_ids, item)
      elif kind == "gensar_rec":
        history, target = self._gensar_history(ex), REC_ITEM + tf.gather(self.rec_ids, item)
      elif kind == "gensar_search":
        history = self._gensar_history(ex)
        target = SRC_ITEM + tf.gather(self.search_ids, item)
      elif kind == "next_query":
        history, target = self._gensar_history(ex), SRC_QUERY + " " + ex["query"]
      else:
        raise ValueError(f"not an event task kind: {kind}")
      inputs, kept = render_inputs(self.vocab, template, {"query": ex["query"]}, history,
                                   self.separator, max_len)
      return {
          "inputs": inputs, "targets": self.vocab.encode_tf(target),
          "target_item": tf.cast(item, tf.int32), "user": tf.cast(ex["user"], tf.int32),
          "event": tf.cast(ex["event"], tf.int32),
          "candidates": tf.cast(ex["candidates"], tf.int32),
          "history_length": kept,
      }
    return fn

  def item_fn(self, kind: str, role: str, sequence_length=None):
    """Map fn: prepared item record -> {inputs, targets, target_item}."""
    max_len = self._input_length(sequence_length)
    table = self.search_ids if role == "search" else self.rec_ids
    token = SRC_ITEM if role == "search" else REC_ITEM

    @tf.autograph.experimental.do_not_convert
    def fn(ex):
      ident = token + tf.gather(table, ex["item"])
      fields = {"content": ex["text"], "item": ident}
      inputs, _ = render_inputs(self.vocab, self.prompts[kind.split("_rec")[0]], fields,
                                None, self.separator, max_len)
      target = ident if kind.startswith("text2id") else ex["text"]
      return {"inputs": inputs, "targets": self.vocab.encode_tf(target),
              "target_item": tf.cast(ex["item"], tf.int32)}
    return fn
