"""genret_jax.decoding: trie tables and jitted beam search over item identifiers."""

from genret_jax.decoding.beam_search import BeamSearchOutput, DecodingState, beam_search
from genret_jax.decoding.candidates import CandidateSet, candidate_set
from genret_jax.decoding.trie import Trie, build_trie, lookup, trie_from_id_table

__all__ = ["BeamSearchOutput", "DecodingState", "beam_search", "CandidateSet", "candidate_set",
           "Trie", "build_trie", "lookup", "trie_from_id_table"]
