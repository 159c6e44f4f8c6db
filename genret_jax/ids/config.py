"""Defaults of the `ids` config block (owned by genret_jax.ids).

`scheme` picks the identifiers everywhere (names: genret_jax.ids.schemes.SCHEMES); the sub-blocks configure the item
embeddings and each quantizer. Defaults follow /work/shared/REFERENCE.md where
the papers state a value (TIGER: 3 x 256 + dedup; GenSAR: 2 shared + 2 + 2
specific x 256, 32-d latents, beta 0.25, Sinkhorn eps 0.003 / 50 iterations,
20 collision rounds), scaled down in epochs so a build takes minutes on CPU.
"""

import ml_collections

def semantic_config() -> ml_collections.ConfigDict:
  """Content embeddings from item text."""
  c = ml_collections.ConfigDict()
  c.source = "tfidf"          # tfidf (TF-IDF + truncated SVD) | npy | t5
  c.path = ""                 # npy: file float[num_items, d]; t5: HF checkpoint dir
  c.dim = 128                 # tfidf: SVD components
  c.max_features = 50000      # tfidf vocabulary cap
  c.fields = ""               # comma-separated text fields in order; '' = all
  c.max_length = 128          # t5: tokens per item text
  c.batch_size = 64           # t5: items per encoder call
  return c


def collaborative_config() -> ml_collections.ConfigDict:
  """Collaborative embeddings: SASRec item table trained on TRAIN rec events."""
  c = ml_collections.ConfigDict()
  c.source = "sasrec"         # sasrec | npy
  c.path = ""                 # npy: file float[num_items, d]
  return c


def sasrec_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.dim = 64
  c.num_layers = 2
  c.num_heads = 1
  c.max_len = 20              # Beauty sequences average ~9 items; 50 pads mostly
  c.dropout = 0.2
  c.loss = "bce"              # bce (1 sampled negative per position) | softmax (full CE)
  c.epochs = 8                # CPU budget; the SASRec paper trains ~200
  c.batch_size = 256
  c.learning_rate = 2e-3
  c.eval_every = 4            # epochs between validation passes (best kept)
  c.patience = 0              # stop after this many passes without a better VALID NDCG; 0 = off
  c.ks = (5, 10, 20)
  c.seed = 0                  # the IDs' SASRec; the sasrec baseline uses the job's `seed`
  return c


def rq_kmeans_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.embedding = "semantic"    # semantic | collaborative | concat
  c.levels = 3
  c.codebook_size = 256
  c.iterations = 50
  c.balanced = False          # Sinkhorn-balanced final assignment per level
  c.dedup = True              # TIGER's extra level making every ID unique
  c.chunk = 16384
  return c


def rq_vae_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.embedding = "semantic"    # semantic | collaborative | concat
  c.levels = 3
  c.codebook_size = 256
  c.latent_dim = 32
  c.hidden = (256, 128)       # TIGER: (512, 256, 128) over 768-d inputs
  c.beta = 0.25
  c.epochs = 100              # CPU budget; TIGER trains far longer
  c.batch_size = 1024
  c.learning_rate = 1e-3
  c.weight_decay = 1e-5
  c.reseed_every = 10         # epochs between dead-code checks (0 = never re-seed)
  c.dedup = True
  return c


def gensar_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.shared_levels = 2
  c.specific_levels = 2
  c.codebook_size = 256
  c.latent_dim = 32           # per embedding; shared codebooks are 2x this
  c.hidden = (256, 128, 64)   # paper: (512, 256, 128, 64); CPU budget
  c.beta = 0.25
  c.epochs = 40               # paper: 500
  c.batch_size = 1024
  c.learning_rate = 1e-3
  c.weight_decay = 1e-5
  c.clip_norm = 1.0
  c.eval_every = 10           # epochs between collision checks (lowest kept)
  c.sinkhorn_eps = 0.003
  c.sinkhorn_iters = 50
  c.collision_rounds = 20
  return c


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.scheme = "atomic"         # atomic | rq_kmeans | rq_vae | gensar
  c.seed = 0
  c.cache_embeddings = True   # reuse {workdir}/ids/embeddings/* built with the same config
  c.semantic = semantic_config()
  c.collaborative = collaborative_config()
  c.sasrec = sasrec_config()
  c.rq_kmeans = rq_kmeans_config()
  c.rq_vae = rq_vae_config()
  c.gensar = gensar_config()
  return c
