"""genret_jax.decoding: trie tables and jitted beam search over item identifiers.

Modules: trie (tables), candidates (per-query candidate tries), beam_search
(the search), model_decode (our T5), config (the `decode` / `eval` blocks).
"""

from genret_jax.decoding.candidates import CandidateSet, candidate_set
from genret_jax.decoding.trie import Trie, build_trie, lookup, trie_from_id_table

__all__ = ["CandidateSet", "candidate_set", "Trie", "build_trie", "lookup",
           "trie_from_id_table"]
