"""genret_jax.decoding: generative retrieval by (constrained) beam search over item IDs.

The public API (docs/decoding.md); the modules are trie (tables), candidates (per-query
candidate tries), beam (the search), model_decode (our T5) and config (the `decode` /
`eval` blocks).

Constraints (pytrees: jit arguments, not constants):
  build_trie(codes, level_offsets, level_sizes, *, prefix_tokens=(), dense_max_mb=8.0,
             csr_widths=None) -> Trie
  trie_from_id_table(table, level_offsets, *, prefix_tokens=(), dense_max_mb=8.0,
                     csr_widths=None) -> Trie        table: anything with codes, level_sizes
  candidate_set(item_tokens, candidates, prefix_tokens) -> CandidateSet   (jittable)
  lookup(constraint, sequences) -> int32[B, K] leaf or -1

Search (pure; jit it):
  beam_search(tokens_to_logits, cache, constraint=None, *, batch_size, beam_size,
              num_results, constrained=True, num_groups=1, diversity_penalty=0.0,
              num_steps=None) -> BeamSearchOutput
      any decoder through a T5X-style tokens_to_logits(DecodingState); constraint=None:
      every token allowed for num_steps steps (no trie needed, no items returned).
  search(module, params, encoder_input_tokens, constraint=None, *, beam_size, num_results,
         mode='constrained', num_groups=1, diversity_penalty=0.0, num_steps=None,
         decode_fn=beam_search) -> BeamSearchOutput
      our T5; `decode_fn` (T5X's) is any function with beam_search's signature (DecodeFn).
  search_jit: `search` under jax.jit (module and keyword settings static).
  sequence_logprobs(module, params, encoder_input_tokens, target_tokens) -> float32[B]
      teacher-forced scores (brute force).
"""

from genret_jax.decoding.beam import (BeamSearchOutput, DecodeFn, DecodingState,
                                      TokensToLogits, beam_search, decode_length,
                                      gather_beams)
from genret_jax.decoding.candidates import CandidateSet, candidate_set
from genret_jax.decoding.model_decode import search, search_jit, search_kwargs, sequence_logprobs
from genret_jax.decoding.trie import (CodeTable, CsrLevel, DenseLevel, Trie, build_trie, lookup,
                                      trie_from_id_table)

__all__ = [
    # constraints
    "Trie", "DenseLevel", "CsrLevel", "CodeTable", "build_trie", "trie_from_id_table",
    "lookup", "CandidateSet", "candidate_set",
    # search
    "beam_search", "BeamSearchOutput", "DecodingState", "TokensToLogits", "DecodeFn",
    "decode_length", "gather_beams", "search", "search_jit", "search_kwargs",
    "sequence_logprobs",
]
