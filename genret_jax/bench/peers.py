"""The Hugging Face PyTorch peers of the benchmarks, float32 and bfloat16 (no flags here).

torch and transformers are optional (the `test` extra), so each function imports
them when called. bfloat16 is what a Hugging Face user on a CPU gets from
`torch.autocast("cpu", dtype=torch.bfloat16)`: parameters and optimizer stay
float32, matmuls and the other autocast ops run in bfloat16.
"""

from __future__ import annotations

import contextlib
import time

from genret_jax.model import network


def autocast(bf16: bool):
  """torch.autocast to bfloat16 on the CPU, or a no-op context."""
  # torch is optional (the `test` extra).
  import torch  # pylint: disable=g-import-not-at-top
  return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


class HFTrain:
  """transformers T5ForConditionalGeneration with our T5Config's dimensions, training.

  One step: forward with labels and backward (under autocast when `bf16`),
  clip_grad_norm_ 1.0, torch.optim.AdamW (lr 1e-3, weight decay 0.01) in
  float32. Same seed, same weights: the float32 and bfloat16 peers start equal.
  `losses` keeps every step's loss.
  """

  def __init__(self, t5: network.T5Config, bf16: bool = False):
    # torch and transformers are optional (the `test` extra): imported for the peer only.
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    self.torch, self.bf16 = torch, bf16
    torch.manual_seed(0)
    hf_config = transformers.T5Config(
        vocab_size=t5.vocab_size, d_model=t5.emb_dim, d_kv=t5.head_dim, d_ff=t5.mlp_dim,
        num_layers=t5.num_encoder_layers, num_decoder_layers=t5.num_decoder_layers,
        num_heads=t5.num_heads, relative_attention_num_buckets=t5.relative_attention_num_buckets,
        relative_attention_max_distance=t5.relative_attention_max_distance,
        dropout_rate=t5.dropout_rate, feed_forward_proj="gated-gelu",
        tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    self.model = transformers.T5ForConditionalGeneration(hf_config)
    # transformers 5 ties the head despite tie_word_embeddings=False: untie it
    # by hand (a distinct lm_head, as in T5 v1.1 / Flan-T5 and in our model).
    self.model.lm_head.weight = torch.nn.Parameter(
        torch.randn(t5.vocab_size, t5.emb_dim) * t5.emb_dim ** -0.5)
    self.model.config.tie_word_embeddings = False
    self.model.train()
    self.num_params = sum(p.numel() for p in self.model.parameters())
    self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.01)
    self.losses: list[float] = []

  def run(self, batches) -> float:
    """Seconds for one step per batch (numpy dicts as genret_jax.bench.train makes)."""
    torch = self.torch
    start = time.perf_counter()
    losses = []
    for batch in batches:
      enc = torch.from_numpy(batch["encoder_input_tokens"]).long()
      labels = torch.from_numpy(batch["decoder_target_tokens"]).long()
      self.opt.zero_grad(set_to_none=True)
      with autocast(self.bf16):
        loss = self.model(input_ids=enc, attention_mask=enc > 0, labels=labels).loss
        loss.backward()
      torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
      self.opt.step()
      losses.append(loss.detach())
    seconds = time.perf_counter() - start
    self.losses += [float(x) for x in losses]     # after the clock: no sync inside the loop
    return seconds


def hf_decode_model(vocab: int):
  """A random-weight TIGER-size transformers T5 (genret_jax.bench.models.TIGER_DIMS), eval."""
  # torch and transformers are optional (the `test` extra): imported for the peer only.
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  cfg = transformers.T5Config(vocab_size=network.pad_vocab_size(vocab), d_model=128, d_kv=64,
                              d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=6,
                              feed_forward_proj="gated-gelu", dropout_rate=0.0,
                              decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
  torch.manual_seed(0)
  return transformers.T5ForConditionalGeneration(cfg).eval()


def hf_generate(model, x, beam, steps, allowed_fn, bf16: bool = False):
  """generate(num_beams=beam) of `steps` tokens, constrained by `allowed_fn` (or None)."""
  # torch is optional (the `test` extra).
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad(), autocast(bf16):
    ids = torch.as_tensor(x, dtype=torch.long)
    return model.generate(input_ids=ids, attention_mask=(ids > 0).long(), num_beams=beam,
                          num_return_sequences=beam, max_new_tokens=steps,
                          min_new_tokens=steps, do_sample=False,
                          prefix_allowed_tokens_fn=allowed_fn)
