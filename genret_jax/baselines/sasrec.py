"""SASRec (Kang & McAuley 2018) in Flax: causal self-attention over a user's
item sequence with learned positions; the output at each position scores the
next item by a dot product with the shared item embedding table.

Trained on TRAIN rec events only (BCE with one uniform negative per position,
or full softmax cross-entropy), validated every `eval_every` epochs with
full-catalog Recall/NDCG@K on the VALID events (best kept), tested on TEST.
Its item embedding table (without the padding row) is the collaborative item
embedding used by the ID builders.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genret_jax.baselines import ranking, sequences
from genret_jax.data.schema import Events
from genret_jax.data.splits import TEST, VALID
from genret_jax.errors import ConfigError
from genret_jax.model import partitioning


class SASRecBlock(nn.Module):
  dim: int
  num_heads: int
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
    q = nn.LayerNorm(name="attn_norm")(x)
    a = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, qkv_features=self.dim, dropout_rate=self.dropout,
        deterministic=deterministic, name="attn")(q, x, mask=mask)
    x = q + a
    y = nn.LayerNorm(name="ffn_norm")(x)
    h = nn.Dropout(self.dropout)(nn.relu(nn.Dense(self.dim, name="ffn_in")(y)), deterministic)
    return y + nn.Dropout(self.dropout)(nn.Dense(self.dim, name="ffn_out")(h), deterministic)


class SASRec(nn.Module):
  """seq int32[B, T] (item + 1, 0 = pad) -> hidden float32[B, T, dim]."""
  num_items: int
  dim: int = 64
  num_layers: int = 2
  num_heads: int = 1
  max_len: int = 50
  dropout: float = 0.2

  def setup(self):
    self.item_emb = nn.Embed(self.num_items + 1, self.dim,
                             embedding_init=nn.initializers.normal(0.02))
    self.pos_emb = nn.Embed(self.max_len, self.dim, embedding_init=nn.initializers.normal(0.02))
    self.blocks = [SASRecBlock(self.dim, self.num_heads, self.dropout, name=f"block_{i}")
                   for i in range(self.num_layers)]
    self.final_norm = nn.LayerNorm()
    self.drop = nn.Dropout(self.dropout)

  def __call__(self, seq: jax.Array, deterministic: bool = True) -> jax.Array:
    t = seq.shape[1]
    valid = seq > 0
    x = self.item_emb(seq) * math.sqrt(self.dim) + self.pos_emb(jnp.arange(t))[None]
    x = self.drop(x, deterministic) * valid[..., None]
    mask = nn.combine_masks(nn.make_causal_mask(seq), valid[:, None, None, :])
    for block in self.blocks:
      x = block(x, mask, deterministic) * valid[..., None]
    return self.final_norm(x)

  def scores(self, seq: jax.Array) -> jax.Array:
    """float32[B, num_items]: next-item scores after the last position."""
    h = self(seq, True)[:, -1]
    return h @ self.item_emb.embedding[1:].T


@dataclasses.dataclass(frozen=True)
class SASRecResult:
  params: Any
  item_embeddings: np.ndarray        # float32[num_items, dim]
  valid_history: list                # [(epoch, train loss, metrics dict)]
  best_epoch: int
  test_metrics: dict[str, float]
  epochs_trained: int                # < epochs when validation stopped it early (patience)
  # sampled protocol on TEST (train_sasrec's test_candidates), else None
  test_sampled_metrics: dict[str, float] | None = None


def _loss(model: SASRec, loss: str, params, key, seq):
  inp, tgt = seq[:, :-1], seq[:, 1:]
  k_drop, k_neg = jax.random.split(key)
  h = model.apply(params, inp, False, rngs={"dropout": k_drop})
  table = params["params"]["item_emb"]["embedding"]
  m = (tgt > 0).astype(jnp.float32)
  if loss == "bce":
    neg = jax.random.randint(k_neg, tgt.shape, 1, model.num_items + 1)
    pos_l = jnp.sum(h * table[tgt], -1)
    neg_l = jnp.sum(h * table[neg], -1)
    per = jax.nn.softplus(-pos_l) + jax.nn.softplus(neg_l)
  else:
    logits = h @ table[1:].T
    per = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(tgt - 1, 0))
  return jnp.sum(per * m) / jnp.maximum(jnp.sum(m), 1.0)


def make_epoch_fn(model: SASRec, loss: str, tx: optax.GradientTransformation,
                  num_seqs: int, batch_size: int):
  """Jitted epoch over shuffled training sequences: one lax.scan of train steps."""
  grad_fn = jax.value_and_grad(lambda p, k, s: _loss(model, loss, p, k, s))
  steps = -(-num_seqs // batch_size)

  @functools.partial(jax.jit, compiler_options=partitioning.compiler_options())
  def epoch(params, opt_state, key, seqs):
    perm = jax.random.permutation(key, num_seqs)
    idx = jnp.concatenate([perm, jnp.full((steps * batch_size - num_seqs,), -1)])
    idx = idx.reshape(steps, batch_size)

    def step(carry, batch_idx):
      params, opt_state = carry
      # Padding rows (-1) become all-pad sequences that contribute nothing.
      batch = jnp.where(batch_idx[:, None] >= 0, seqs[jnp.maximum(batch_idx, 0)], 0)
      l, grads = grad_fn(params, jax.random.fold_in(key, batch_idx[0]), batch)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), l

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), idx)
    return params, opt_state, jnp.mean(losses)

  return epoch


@functools.lru_cache(maxsize=8)
def _rank_fn(model: SASRec):
  return ranking.make_rank_fn(lambda p, x: model.apply(p, x, method=SASRec.scores))


@functools.lru_cache(maxsize=8)
def _candidate_rank_fn(model: SASRec):
  return ranking.make_candidate_rank_fn(lambda p, x: model.apply(p, x, method=SASRec.scores))


def evaluate(model: SASRec, params, histories: np.ndarray, targets: np.ndarray,
             ks: Sequence[int], batch_size: int = 256,
             candidates: np.ndarray | None = None) -> dict[str, float]:
  """Recall@K / NDCG@K of next-item prediction (compiled once per model): over the
  full catalog, or with `candidates` (int[E, C], each row holding its target once:
  the sampled 1 + 99 protocol) over those items only."""
  if candidates is None:
    above, ties = ranking.batched_ranks(_rank_fn(model), params, histories, targets,
                                        batch_size)
  else:
    candidates = ranking.check_candidates(candidates, targets, model.num_items)
    above, ties = ranking.batched_ranks(_candidate_rank_fn(model), params, histories, targets,
                                        batch_size, candidates=candidates)
  return ranking.metrics_from_ranks(above, ks, ties)


def train_sasrec(events: Events, split: np.ndarray, num_items: int, *, dim: int = 64,
                 num_layers: int = 2, num_heads: int = 1, max_len: int = 50,
                 dropout: float = 0.2, loss: str = "bce", epochs: int = 30,
                 batch_size: int = 128, learning_rate: float = 1e-3, eval_every: int = 5,
                 ks: Sequence[int] = (5, 10, 20), seed: int = 0, patience: int = 0,
                 all_windows: bool = True,
                 test_rows: np.ndarray | None = None, test_candidates: np.ndarray | None = None,
                 verbose: bool = False) -> SASRecResult:
  """Trains SASRec on TRAIN rec events; selects by VALID NDCG@max(ks); tests on TEST.

  patience: stop after this many validation passes (every `eval_every` epochs) in a
    row without a better VALID NDCG@max(ks); 0 = train all `epochs`.

  all_windows: train on every max_len window of each history (see
  sequences.train_sequences), not only the last one.
  test_rows: int[Q], the TEST rec events (in event order) to evaluate; all when None.
  test_candidates: int[Q, C], the sampled-protocol candidates of those Q events
    (target included, e.g. PreparedDataset.candidates()); when given, the best
    model is also scored on them (`test_sampled_metrics`).
  """
  if loss not in ("bce", "softmax"):
    raise ConfigError("ids.sasrec.loss", f"must be bce or softmax, got {loss!r}")
  if dim % num_heads:
    raise ConfigError("ids.sasrec.num_heads", f"{num_heads} does not divide dim {dim}")
  seqs = sequences.train_sequences(events, split, max_len, all_windows)
  if seqs.shape[0] == 0:
    raise ConfigError("ids.collaborative.source",
                      "sasrec needs users with >= 2 TRAIN rec events; the data has none")
  test_x, test_y = sequences.eval_examples(events, split, TEST, max_len)
  if test_rows is not None:
    test_x, test_y = test_x[test_rows], test_y[test_rows]
  if test_candidates is not None:     # checked before training: fail fast
    test_candidates = ranking.check_candidates(test_candidates, test_y, num_items)
  model = SASRec(num_items, dim, num_layers, num_heads, max_len, dropout)
  key = jax.random.PRNGKey(seed)
  params = model.init(key, jnp.zeros((1, max_len), jnp.int32))
  tx = optax.adam(learning_rate)
  opt_state = tx.init(params)
  epoch_fn = make_epoch_fn(model, loss, tx, seqs.shape[0], min(batch_size, seqs.shape[0]))
  valid_x, valid_y = sequences.eval_examples(events, split, VALID, max_len)
  select = f"ndcg@{max(ks)}"
  seqs_dev = jnp.asarray(seqs)
  history, best, best_score, best_epoch, epoch = [], params, -1.0, epochs, 0
  stale = 0                           # validation passes since the last improvement
  for epoch in range(1, epochs + 1):
    params, opt_state, l = epoch_fn(params, opt_state, jax.random.fold_in(key, epoch), seqs_dev)
    if valid_y.size and (epoch % max(eval_every, 1) == 0 or epoch == epochs):
      m = evaluate(model, params, valid_x, valid_y, ks)
      history.append((epoch, float(l), m))
      if verbose:
        print(f"sasrec epoch {epoch} loss {float(l):.4f} valid {m}")
      if m[select] > best_score:
        best, best_score, best_epoch, stale = params, m[select], epoch, 0
      else:
        stale += 1
        if patience and stale >= patience:
          if verbose:
            print(f"sasrec: early stop at epoch {epoch} (best {select} {best_score:.4f} "
                  f"at epoch {best_epoch})")
          break
  if not valid_y.size:
    best = params
  test = evaluate(model, best, test_x, test_y, ks)
  sampled = None
  if test_candidates is not None:
    sampled = evaluate(model, best, test_x, test_y, ks, candidates=test_candidates)
  table = np.asarray(best["params"]["item_emb"]["embedding"][1:], np.float32)
  return SASRecResult(best, table, history, best_epoch, test, epoch, sampled)


def train_from_config(events: Events, split: np.ndarray, num_items: int,
                      s: ml_collections.ConfigDict, *, seed: int, **kwargs) -> SASRecResult:
  """train_sasrec with the settings of an `ids.sasrec` config block (`ks` from the
  block unless given); `kwargs` are train_sasrec's test / verbosity arguments."""
  kwargs.setdefault("ks", tuple(s.ks))
  return train_sasrec(
      events, split, num_items, dim=int(s.dim), num_layers=int(s.num_layers),
      num_heads=int(s.num_heads), max_len=int(s.max_len), dropout=float(s.dropout),
      loss=str(s.loss), epochs=int(s.epochs), batch_size=int(s.batch_size),
      learning_rate=float(s.learning_rate), eval_every=int(s.eval_every),
      patience=int(s.patience), seed=seed, **kwargs)
