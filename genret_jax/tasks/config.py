"""Defaults of the `vocab` and `tasks` config blocks (owned by genret_jax.tasks).

Task kinds (docs/tasks.md): rec, search (Penha et al.'s Gen_R / Gen_S tasks);
gensar_rec (NRIP), gensar_search (NSIP), next_query (NSQP), text2id and
id2text (identifier-language alignment) of GenSAR.
"""

import ml_collections

TASK_KINDS = ("rec", "search", "gensar_rec", "gensar_search", "next_query", "text2id",
              "id2text")
MIXTURES = ("rec_only", "search_only", "joint", "gensar")

# Input templates. {history}: the user's history; {query}: the event's query;
# {content}: an item's text; {item}: an item's identifier tokens.
# full: template 0 of GenSAR (Shi et al. 2025) for its tasks, the same wording for
#   Gen_R / Gen_S (for a pretrained checkpoint, which can read it);
# short: a task prefix (for models trained from scratch: every prompt token is
#   noise the model must learn to ignore, and it costs input length);
# none: the fields alone.
PROMPT_STYLES = {
    "full": {
        "rec": "Here is the user's history {history}. Please recommend the next item the "
               "user might want to click on.",
        "search": "The following is the user's search query {query}. Please predict the "
                  "item the user will click on.",
        "gensar_rec": "Here is the user's history {history}. Please recommend the next item "
                      "the user might want to click on.",
        "gensar_search": "{history} The following is the user's search query {query}. "
                         "Please predict the next item the user will click on after the "
                         "search.",
        "next_query": "Here is the user's history {history}. Please predict the next query "
                      "the user might want to search.",
        "text2id": "Given the description of an item {content}, predict the corresponding "
                   "item.",
        "id2text": "Given the item {item}, please provide its description.",
    },
    "short": {
        "rec": "recommend: {history}", "search": "search: {query}",
        "gensar_rec": "recommend: {history}", "gensar_search": "{history} search: {query}",
        "next_query": "next query: {history}", "text2id": "item: {content}",
        "id2text": "describe: {item}",
    },
    "none": {
        "rec": "{history}", "search": "{query}", "gensar_rec": "{history}",
        "gensar_search": "{history} {query}", "next_query": "{history}",
        "text2id": "{content}", "id2text": "{item}",
    },
}


def prompt_templates(tasks: ml_collections.ConfigDict) -> dict[str, str]:
  """kind -> input template: `tasks.prompts.<kind>` when set, else the template of
  `tasks.prompt_style` (validated by genret_jax.tasks.registry.validate)."""
  style = PROMPT_STYLES[tasks.prompt_style]
  return {k: str(tasks.prompts[k]) or style[k] for k in TASK_KINDS}


def default_prompt_texts() -> list[str]:
  """The literal text of every style's prompts (part of the SentencePiece corpus)."""
  texts = [p.replace("{", "").replace("}", "") for style in PROMPT_STYLES.values()
           for p in style.values()]
  return [t for t in dict.fromkeys(t.strip() for t in texts) if t]


def vocab_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.sp_model = ""             # path to an existing SentencePiece .model; '' = train one
  c.sp_vocab_size = 2000      # size when training one on the prepared corpus (upper bound)
  return c


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.mixture = "joint"         # rec_only | search_only | joint | gensar
  c.max_input_length = 128    # tokens; the oldest history elements are dropped to fit
  c.max_target_length = 16    # tokens; with packing, room for 8 atomic-ID targets per row
  c.history_separator = ""    # between history elements; paper scale: "; " (GenSAR's).
                              # Atomic / semantic IDs delimit themselves: "; " made rec
                              # inputs 27 instead of 16 tokens (4.0 vs 7.1 per packed row)
  c.prompt_style = "short"    # full | short | none (PROMPT_STYLES); paper scale: full
  # Per-kind template overriding the style's; '' = the style's.
  c.prompts = ml_collections.ConfigDict({k: "" for k in TASK_KINDS})
  # Mixing rate per task kind; < 0 = its number of (capped) training examples,
  # i.e. a plain union of the training sets (Gen_R+S).
  c.rates = ml_collections.ConfigDict({k: -1.0 for k in TASK_KINDS})
  # Penha et al.'s ablation: cap the TRAIN examples per target item of the
  # tasks of one behaviour (the added task), e.g. cap_behaviour='search',
  # cap_per_item=5 / 10 / 50 / 500. '' / 0 = no cap.
  c.cap_behaviour = ""        # '' | rec | search
  c.cap_per_item = 0
  c.pack = False              # example packing, passed to the feature converter
  # GenSAR's behaviour tokens <rec_item> / <src_query> / <src_item> in the
  # histories, targets and alignment tasks, and forced first when decoding.
  # False = GenSAR's ablation "w/o behaviour tokens": none anywhere (the tokens
  # stay in the vocabulary, unused). No effect on the rec / search tasks.
  c.behaviour_tokens = True
  return c
