"""The registry of task kinds: what each kind reads, which history it carries, its
target and its prompts. Everything else about a kind (config keys, template checks,
registration, eval prefixes) is derived from `KINDS` when it is used.

Kinds (docs/tasks.md): rec, search (Penha et al.'s Gen_R / Gen_S tasks);
gensar_rec (NRIP), gensar_search (NSIP), next_query (NSQP), text2id and id2text
(identifier-language alignment) of GenSAR. Targets:
  rec `<rec ID>`; search `<search ID>`; gensar_rec `<rec_item><rec ID>`;
  gensar_search `<src_item><search ID>`; next_query `<src_query> {query}`;
  text2id `<src_item><search ID>` (and `<rec_item><rec ID>` for text2id_rec);
  id2text `{content}`.
Without behaviour tokens (`tasks.behaviour_tokens = False`) the behaviour tokens
are left out of every target (`Formatter.with_behaviour`).

Light on purpose (no TensorFlow / seqio): the config block imports it while flags
are parsed. A target is a function `(formatter, example) -> int32[T]` that uses only
the public token helpers of `genret_jax.tasks.formatting.Formatter`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from genret_jax.data.schema import REC, SEARCH

# Behaviour tokens (GenSAR), appended to the vocabulary after the identifier tokens.
REC_ITEM, SRC_QUERY, SRC_ITEM = "<rec_item>", "<src_query>", "<src_item>"
BEHAVIOUR_TOKENS = (REC_ITEM, SRC_QUERY, SRC_ITEM)

# Prompt styles, `tasks.prompt_style`. full: template 0 of GenSAR (Shi et al. 2025) for
# its tasks, the same wording for Gen_R / Gen_S (for a pretrained checkpoint, which
# can read it); short: a task prefix (for models trained from scratch: every prompt
# token is noise the model must learn to ignore, and it costs input length);
# none: the fields alone.
STYLES = ("full", "short", "none")
SOURCES = ("events", "items")
HISTORIES = ("rec", "gensar")
# Template placeholders each source provides. {history}: the user's history;
# {query}: the event's query; {content}: an item's text; {item}: an item's
# identifier tokens (behaviour token first).
SOURCE_FIELDS = {"events": frozenset({"history", "query"}),
                 "items": frozenset({"content", "item"})}

# (formatter, example) -> int32[T] target tokens. `example` is the prepared record
# (data.prepared.EVENT_FEATURES / ITEM_FEATURES); item kinds also get `identifier`,
# string[]: the item's identifier in the task's table, behaviour token first.
Target = Callable[[Any, Mapping[str, Any]], Any]


@dataclasses.dataclass(frozen=True)
class TaskKind:
  """One task kind.

  Attributes:
    name: the kind, its key in KINDS (and in `tasks.prompts` / `tasks.rates`).
    source: "events" (the prepared events of `behaviour`, one example each) or
      "items" (the catalog, one example per item, `train` split only).
    behaviour: REC / SEARCH for event kinds, None for item kinds.
    history: which history the input carries: "rec" (the rec items, bare IDs),
      "gensar" (rec and search events with behaviour tokens) or None.
    target: (formatter, example) -> int32[T] target tokens (EOS excluded).
    required_fields: placeholders every template of the kind must contain.
    allowed_fields: placeholders a template may contain (from SOURCE_FIELDS).
    prompts: style -> input template, one per STYLES.
    eval_prefix: behaviour token forced first when decoding this kind as an eval
      task ('' = none).
    both_tables: an item kind also registered as `<name>_rec` over the rec table
      when the search and rec tables differ (GenSAR's dual IDs).
  """
  name: str
  source: str
  behaviour: int | None
  history: str | None
  target: Target
  required_fields: frozenset[str]
  allowed_fields: frozenset[str]
  prompts: Mapping[str, str]
  eval_prefix: str = ""
  both_tables: bool = False

  def __post_init__(self):
    if self.source not in SOURCES:
      raise ValueError(f"{self.name}: source {self.source!r} is not one of {SOURCES}")
    if (self.behaviour is None) != (self.source == "items"):
      raise ValueError(f"{self.name}: event kinds need a behaviour (REC / SEARCH), item "
                       "kinds none")
    if self.history not in (None, *HISTORIES) or (self.history and self.source != "events"):
      raise ValueError(f"{self.name}: history {self.history!r} is not None or one of "
                       f"{HISTORIES} (event kinds only)")
    if not self.required_fields <= self.allowed_fields <= SOURCE_FIELDS[self.source]:
      raise ValueError(f"{self.name}: fields must be required <= allowed <= "
                       f"{sorted(SOURCE_FIELDS[self.source])}")
    if ("history" in self.allowed_fields) != (self.history is not None):
      raise ValueError(f"{self.name}: a template may use {{history}} iff there is a history")
    if set(self.prompts) != set(STYLES):
      raise ValueError(f"{self.name}: prompts needs exactly the styles {STYLES}")
    if self.eval_prefix not in ("", *BEHAVIOUR_TOKENS):
      raise ValueError(f"{self.name}: eval_prefix must be '' or a behaviour token")
    if self.both_tables and self.source != "items":
      raise ValueError(f"{self.name}: both_tables is for item kinds")


def _rec_id(f, ex):
  return f.rec_id_tokens(ex["item"])


def _search_id(f, ex):
  return f.search_id_tokens(ex["item"])


def _gensar_rec(f, ex):
  return f.with_behaviour(REC_ITEM, f.rec_id_tokens(ex["item"]))


def _gensar_search(f, ex):
  return f.with_behaviour(SRC_ITEM, f.search_id_tokens(ex["item"]))


def _next_query(f, ex):
  return f.with_behaviour(SRC_QUERY, f.query_text_tokens(ex["query"]))


def _identifier(f, ex):
  return f.text_tokens(ex["identifier"])


def _content(f, ex):
  return f.text_tokens(ex["text"])


def _kind(name: str, source: str, behaviour: int | None, history: str | None,
          target: Target, required: set[str], full: str, short: str, none: str,
          allowed: set[str] | None = None, **kwargs) -> TaskKind:
  """A TaskKind with its three prompts given by style."""
  return TaskKind(name, source, behaviour, history, target, frozenset(required),
                  frozenset(required if allowed is None else allowed),
                  {"full": full, "short": short, "none": none}, **kwargs)


_GENSAR_REC_FULL = ("Here is the user's history {history}. Please recommend the next item "
                    "the user might want to click on.")
KINDS: dict[str, TaskKind] = {k.name: k for k in (
    _kind("rec", "events", REC, "rec", _rec_id, {"history"},
          full=_GENSAR_REC_FULL, short="recommend: {history}", none="{history}"),
    _kind("search", "events", SEARCH, None, _search_id, {"query"},
          full="The following is the user's search query {query}. Please predict the item "
               "the user will click on.",
          short="search: {query}", none="{query}"),
    _kind("gensar_rec", "events", REC, "gensar", _gensar_rec, {"history"},
          full=_GENSAR_REC_FULL, short="recommend: {history}", none="{history}",
          eval_prefix=REC_ITEM),
    _kind("gensar_search", "events", SEARCH, "gensar", _gensar_search, {"history", "query"},
          full="{history} The following is the user's search query {query}. Please predict "
               "the next item the user will click on after the search.",
          short="{history} search: {query}", none="{history} {query}",
          eval_prefix=SRC_ITEM),
    _kind("next_query", "events", SEARCH, "gensar", _next_query, {"history"},
          full="Here is the user's history {history}. Please predict the next query the "
               "user might want to search.",
          short="next query: {history}", none="{history}"),
    _kind("text2id", "items", None, None, _identifier, {"content"},
          full="Given the description of an item {content}, predict the corresponding item.",
          short="item: {content}", none="{content}", both_tables=True),
    _kind("id2text", "items", None, None, _content, {"item"}, allowed={"item", "content"},
          full="Given the item {item}, please provide its description.",
          short="describe: {item}", none="{item}", both_tables=True),
)}


def task_tables(two_tables: bool) -> dict[str, tuple[str, str | None]]:
  """{task key: (kind, ID table role of an item kind: 'search' | 'rec'; None for an
  event kind)} of the tasks registered, in KINDS order.

  Every kind is one task under its own name (an item kind over the search table);
  a `both_tables` kind is also `<name>_rec` over the rec table when `two_tables`.
  """
  out = {}
  for name, kind in KINDS.items():
    out[name] = (name, None if kind.source == "events" else "search")
    if kind.both_tables and two_tables:
      out[f"{name}_rec"] = (name, "rec")
  return out
