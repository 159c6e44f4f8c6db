"""Defaults of the `vocab` and `tasks` config blocks (owned by genret_jax.tasks).

The task kinds, their prompts and their per-kind keys (`tasks.prompts.<kind>`,
`tasks.rates.<kind>`) come from the registry `genret_jax.tasks.kinds.KINDS`.
"""

import ml_collections

from genret_jax.tasks.kinds import KINDS, STYLES

MIXTURES = ("rec_only", "search_only", "joint", "gensar")


def prompt_templates(tasks: ml_collections.ConfigDict) -> dict[str, str]:
  """kind -> input template: `tasks.prompts.<kind>` when set, else the template of
  `tasks.prompt_style` (validated by genret_jax.tasks.registry.validate)."""
  return {name: str(tasks.prompts[name]) or kind.prompts[tasks.prompt_style]
          for name, kind in KINDS.items()}


def default_prompt_texts() -> list[str]:
  """The literal text of every style's prompts (part of the SentencePiece corpus)."""
  texts = [kind.prompts[style].replace("{", "").replace("}", "") for style in STYLES
           for kind in KINDS.values()]
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
  c.prompt_style = "short"    # full | short | none (kinds.STYLES); paper scale: full
  # Per-kind template overriding the style's; '' = the style's.
  c.prompts = ml_collections.ConfigDict({k: "" for k in KINDS})
  # Mixing rate per task kind; < 0 = its number of (capped) training examples,
  # i.e. a plain union of the training sets (Gen_R+S).
  c.rates = ml_collections.ConfigDict({k: -1.0 for k in KINDS})
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
