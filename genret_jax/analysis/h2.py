"""H2: do learned item representations carry content and collaborative signal?

Penha et al. (RecSys 2024) argue that joint training makes each item's ID
embedding both content-aware (search) and collaborative (recommendation). We
compare the k-nearest-neighbour sets of the learned ID-token embeddings with
those of two references:

  content:       TF-IDF vectors of the item texts (scikit-learn, English stop
                 words, l2-normalised); similarity = cosine.
  co-occurrence: C[i, j] = number of times items i and j occur within
                 `window` positions of each other in a user's TRAIN sequence
                 (both orders, i != j); similarity = the count.

Neighbours. Learned: cosine similarity of the embeddings, self excluded.
Reference: the k most similar items with similarity > 0, self excluded; items
with fewer than k such items are not evaluated (their count is reported).
Ties are broken by a seeded random permutation of the catalog, the same for
learned and reference neighbours (`topk.topk_rows`).

Scores over the evaluated items i, with L = learned and R = reference
neighbour sets of size k:
  overlap@k = mean |L ∩ R| / k            (chance: k / (N - 1))
  jaccard@k = mean |L ∩ R| / |L ∪ R|
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from genret_jax.analysis import plots
from genret_jax.baselines.topk import tie_ranks, topk_rows
from genret_jax.data.schema import REC, Events
from genret_jax.data.splits import TRAIN

_BATCH = 512


def train_sequences(events: Events, split: np.ndarray,
                    behaviours: Sequence[int] = (REC,)) -> tuple[np.ndarray, np.ndarray]:
  """(user int[T], item int[T]): TRAIN events of `behaviours` in (user, time) order."""
  keep = (np.asarray(split) == TRAIN) & np.isin(events.behaviour, np.asarray(behaviours))
  return events.user[keep], events.item[keep]


def cooccurrence_matrix(user: np.ndarray, item: np.ndarray, num_items: int,
                        window: int = 5) -> sp.csr_matrix:
  """int64[N, N] CSR symmetric co-occurrence counts within `window` positions.

  Args:
    user, item: int[T] events of the sequences, grouped by user in time order.
    num_items: N.
    window: max distance (>= 1) between two co-occurring positions.
  """
  if window < 1:
    raise ValueError(f"h2: window={window} must be >= 1")
  user = np.asarray(user)
  item = np.asarray(item).astype(np.int64)
  if user.shape != item.shape or user.ndim != 1:
    raise ValueError("h2: user and item must be int[T] of the same length")
  if item.size and (item.min() < 0 or item.max() >= num_items):
    raise ValueError(f"h2: items must be in [0, {num_items})")
  rows, cols = [], []
  for d in range(1, window + 1):
    same = user[d:] == user[:-d]
    a, b = item[:-d][same], item[d:][same]
    keep = a != b
    rows += [a[keep], b[keep]]
    cols += [b[keep], a[keep]]
  r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
  c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
  m = sp.coo_matrix((np.ones(r.size, np.int64), (r, c)), shape=(num_items, num_items))
  return m.tocsr()   # duplicates are summed


def tfidf_matrix(texts: Sequence[str]) -> sp.csr_matrix:
  """float64[N, V] CSR l2-normalised TF-IDF vectors (empty text: zero row)."""
  vec = TfidfVectorizer(stop_words="english", lowercase=True)
  try:
    return vec.fit_transform(list(texts)).tocsr()
  except ValueError as e:          # every text empty / only stop words
    raise ValueError(f"h2: no item text has a content word ({e})") from None


def _normalise(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  norm = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.where(norm > 0, norm, 1.0)


def _knn(rows: Callable[[int, int], np.ndarray], n: int, k: int, tie: np.ndarray,
         positive_only: bool) -> tuple[np.ndarray, np.ndarray]:
  """Top-k neighbours of every item from batches of similarity rows.

  Returns (int64[N, k] neighbours, bool[N] rows with k admissible neighbours).
  """
  if not 1 <= k < n:
    raise ValueError(f"h2: k={k} must be in [1, {n - 1}] (num_items - 1)")
  out = np.empty((n, k), np.int64)
  valid = np.empty(n, bool)
  for lo in range(0, n, _BATCH):
    hi = min(n, lo + _BATCH)
    s = np.asarray(rows(lo, hi), np.float64)
    s[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf
    if positive_only:
      s = np.where(s > 0, s, -np.inf)
    out[lo:hi] = topk_rows(s, k, tie)
    valid[lo:hi] = np.isfinite(s).sum(1) >= k
  return out, valid


def knn_embeddings(emb: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
  """int64[N, k] cosine nearest neighbours of float[N, d] embeddings (self excluded)."""
  x = _normalise(emb)
  nbrs, _ = _knn(lambda lo, hi: x[lo:hi] @ x.T, x.shape[0], k,
                 tie_ranks(x.shape[0], seed), positive_only=False)
  return nbrs


def knn_reference(sim: sp.spmatrix | np.ndarray, k: int,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Top-k positive-similarity neighbours from an [N, N] similarity matrix.

  Returns (int64[N, k], bool[N] items that have k neighbours with sim > 0).
  """
  n = sim.shape[0]
  if sim.shape != (n, n):
    raise ValueError(f"h2: similarity must be square, got {sim.shape}")
  rows = sim.tocsr() if sp.issparse(sim) else np.asarray(sim)

  def get(lo: int, hi: int) -> np.ndarray:
    block = rows[lo:hi]
    return block.toarray() if sp.issparse(block) else block

  return _knn(get, n, k, tie_ranks(n, seed), positive_only=True)


def knn_content(features: sp.spmatrix, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """`knn_reference` of the cosine similarity of l2-normalised sparse rows
  (e.g. `tfidf_matrix`), computed a block of rows at a time (never [N, N])."""
  x = sp.csr_matrix(features)
  n = x.shape[0]
  return _knn(lambda lo, hi: (x[lo:hi] @ x.T).toarray(), n, k, tie_ranks(n, seed),
              positive_only=True)


def neighbour_overlap(learned: np.ndarray, reference: np.ndarray,
                      valid: np.ndarray) -> dict[str, float]:
  """{'overlap', 'jaccard', 'num_items'} of two int[N, k] neighbour tables over `valid` rows."""
  learned, reference = learned[valid], reference[valid]
  k = learned.shape[1]
  if learned.shape[0] == 0:
    return {"overlap": float("nan"), "jaccard": float("nan"), "num_items": 0}
  inter = np.zeros(learned.shape[0], np.int64)
  for lo in range(0, learned.shape[0], 4096):
    a, b = learned[lo:lo + 4096], reference[lo:lo + 4096]
    inter[lo:lo + 4096] = (a[:, :, None] == b[:, None, :]).any(-1).sum(-1)
  return {"overlap": float((inter / k).mean()),
          "jaccard": float((inter / (2 * k - inter)).mean()),
          "num_items": int(learned.shape[0])}


def tsne_coords(embeddings: Mapping[str, np.ndarray], items: np.ndarray, seed: int = 0,
                max_iter: int = 1000, threads: int | None = 1) -> dict[str, np.ndarray]:
  """model -> float32[M, 2] t-SNE of the l2-normalised `items` rows.

  scikit-learn Barnes-Hut t-SNE, PCA init, perplexity min(30, (M - 1) / 3),
  fixed seed. `threads` caps its OpenMP threads (None = no cap): on a loaded
  2-core machine the default OpenMP pool is 20-50x slower than one thread.
  """
  m = items.size
  if m < 5:
    raise ValueError(f"h2: t-SNE needs at least 5 items, got {m}")
  out = {}
  with threadpool_limits(limits=threads):
    for name, emb in embeddings.items():
      tsne = TSNE(n_components=2, perplexity=min(30.0, (m - 1) / 3.0), init="pca",
                  learning_rate="auto", max_iter=max_iter, random_state=seed)
      out[name] = tsne.fit_transform(_normalise(np.asarray(emb)[items])).astype(np.float32)
  return out


def h2_analysis(embeddings: Mapping[str, np.ndarray], texts: Sequence[str],
                user: np.ndarray, item: np.ndarray, *, k: int = 10, window: int = 5,
                popularity: np.ndarray | None = None, plot_path: str | None = None,
                tsne_items: int = 1000, tsne_iter: int = 1000, seed: int = 0,
                title: str = "") -> dict:
  """Neighbour overlap of each model's item embeddings with both references.

  Args:
    embeddings: model -> float[N, d] ID-token embeddings (row i = item i).
    texts: N item texts (`Catalog.texts()`).
    user, item: TRAIN sequences (`train_sequences`) for the co-occurrence reference.
    k: neighbours per item. window: co-occurrence window.
    popularity: float[N] item popularity for the t-SNE colours (needed with plot_path).
    plot_path: if set, the t-SNE PNG (one panel per model, `tsne_items` items
      sampled with `seed`, the same items in every panel; `tsne_iter`
      optimisation steps, >= 250).
    seed: tie-break, subsample and t-SNE seed.
  Returns:
    {'k', 'chance_overlap': k / (N - 1),
     'references': {'content' | 'cooccurrence': {'num_items'}},
     'models': {name: {'content' | 'cooccurrence': {'overlap', 'jaccard', 'num_items'}}}}
  """
  n = len(texts)
  if not embeddings:
    raise ValueError("h2: no embeddings")
  for name, emb in embeddings.items():
    if np.ndim(emb) != 2 or np.shape(emb)[0] != n:
      raise ValueError(f"h2: embeddings[{name!r}] shape {np.shape(emb)} must be [{n}, d]")
    if not np.isfinite(emb).all():
      raise ValueError(f"h2: embeddings[{name!r}] has non-finite values")
  if plot_path and (popularity is None or np.shape(popularity) != (n,)):
    raise ValueError(f"h2: a t-SNE plot needs popularity float[{n}]")
  x = tfidf_matrix(texts)
  refs = {"content": knn_content(x, k, seed),
          "cooccurrence": knn_reference(cooccurrence_matrix(user, item, n, window), k, seed)}
  out = {"k": k, "chance_overlap": k / (n - 1),
         "references": {r: {"num_items": int(v.sum())} for r, (_, v) in refs.items()},
         "models": {}}
  for name, emb in embeddings.items():
    learned = knn_embeddings(emb, k, seed)
    out["models"][name] = {r: neighbour_overlap(learned, nb, v) for r, (nb, v) in refs.items()}
  if plot_path:
    rng = np.random.default_rng(seed)
    items = np.sort(rng.choice(n, size=min(tsne_items, n), replace=False))
    coords = tsne_coords(embeddings, items, seed, max_iter=tsne_iter)
    plots.tsne_panels(coords, np.asarray(popularity)[items], plot_path, title=title)
  return out
