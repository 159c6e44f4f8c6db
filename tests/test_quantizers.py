"""k-means, Sinkhorn, RQ-KMeans, RQ-VAE and GenSAR quantizers: exact invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genret_jax.ids import gensar, kmeans, rq_kmeans, rq_vae, stats, vq


def _blobs(n=600, d=8, centers=6, seed=0):
  rng = np.random.default_rng(seed)
  mu = rng.normal(scale=5.0, size=(centers, d))
  return (mu[rng.integers(centers, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_kmeans_recovers_blobs_and_matches_sklearn():
  from sklearn.cluster import KMeans
  x = _blobs()
  res = kmeans.kmeans(jax.random.PRNGKey(0), x, 6, iters=50)
  ref = KMeans(6, n_init=5, random_state=0).fit(x)
  assert float(res.inertia) == pytest.approx(ref.inertia_ / len(x), rel=1e-3)
  # Same partition as sklearn up to relabelling.
  pairs = set(zip(np.asarray(res.codes).tolist(), ref.labels_.tolist()))
  assert len(pairs) == 6


def test_kmeans_deterministic_by_seed_and_chunk_invariant():
  x = _blobs(n=500, d=4, centers=20, seed=1)
  a = kmeans.kmeans(jax.random.PRNGKey(3), x, 16, iters=10)
  b = kmeans.kmeans(jax.random.PRNGKey(3), x, 16, iters=10)
  c = kmeans.kmeans(jax.random.PRNGKey(4), x, 16, iters=10)
  small = kmeans.kmeans(jax.random.PRNGKey(3), x, 16, iters=10, chunk=37)
  np.testing.assert_array_equal(a.centers, b.centers)
  np.testing.assert_array_equal(a.codes, b.codes)
  assert not np.array_equal(a.centers, c.centers)
  np.testing.assert_allclose(a.centers, small.centers, atol=1e-4)
  np.testing.assert_array_equal(a.codes, small.codes)


def test_kmeans_empty_clusters_are_reseeded_not_lost():
  # 3 distinct points, k = 3, plus a heavy duplicate: every center must be used.
  x = np.array([[0, 0]] * 50 + [[10, 0], [0, 10]], np.float32)
  res = kmeans.kmeans(jax.random.PRNGKey(0), x, 3, iters=20)
  assert len(np.unique(np.asarray(res.codes))) == 3
  assert float(res.inertia) == pytest.approx(0.0, abs=1e-6)


def test_sinkhorn_balances_skewed_data():
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(size=(900, 2)) * 0.3, rng.normal(size=(100, 2)) + 5]).astype(
      np.float32)
  centers = jnp.asarray(rng.normal(size=(8, 2)) * 2, jnp.float32)
  plain, _ = kmeans.assign(x, centers)
  bal = kmeans.sinkhorn_assign(x, centers, eps=0.003, iters=100, chunk=128)
  assert kmeans.balanced_fraction(np.asarray(bal), 8) < 1.5
  assert kmeans.balanced_fraction(np.asarray(plain), 8) > 2.0
  # Chunking does not change the result.
  np.testing.assert_array_equal(bal, kmeans.sinkhorn_assign(x, centers, eps=0.003, iters=100,
                                                            chunk=1000))


def test_stats_exact_values():
  codes = np.array([[0, 1], [0, 1], [2, 1], [0, 3]])
  assert stats.collision_rate(codes) == pytest.approx(1 - 3 / 4)
  np.testing.assert_array_equal(stats.colliding_items(codes), [True, True, False, False])
  assert stats.codebook_usage(codes, (4, 4)) == [0.5, 0.5]
  assert stats.code_entropy(codes, (4, 4)) == pytest.approx(
      [-(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25))] * 2)
  extra, size = stats.dedup_level(np.array([[1, 1], [0, 0], [1, 1], [1, 1], [0, 0], [2, 2]]))
  np.testing.assert_array_equal(extra, [0, 0, 1, 2, 1, 0])
  assert size == 3


def test_rq_kmeans_error_falls_with_levels_and_dedup_makes_ids_unique():
  x = np.random.default_rng(0).normal(size=(400, 16)).astype(np.float32)
  res = rq_kmeans.rq_kmeans(x, levels=3, codebook_size=8, seed=0, iterations=20)
  assert res.codes.shape == (400, 3) and res.codes.dtype == np.int32
  assert (res.codes >= 0).all() and (res.codes < 8).all()
  assert np.all(np.diff(res.recon_error) < 0)
  assert res.recon_error[0] < float(np.mean(np.sum((x - x.mean(0)) ** 2, 1)))
  recon = res.codebooks[np.arange(3)[None], res.codes].sum(1)
  assert np.mean(np.sum((x - recon) ** 2, 1)) == pytest.approx(res.recon_error[-1], rel=1e-4)
  assert stats.collision_rate(res.codes) > 0
  codes, sizes = rq_kmeans.with_dedup(res.codes, (8, 8, 8))
  assert stats.collision_rate(codes) == 0.0
  assert sizes[:3] == (8, 8, 8) and codes[:, 3].max() == sizes[3] - 1
  again = rq_kmeans.rq_kmeans(x, levels=3, codebook_size=8, seed=0, iterations=20)
  np.testing.assert_array_equal(res.codes, again.codes)
  other = rq_kmeans.rq_kmeans(x, levels=3, codebook_size=8, seed=1, iterations=20)
  assert not np.array_equal(res.codes, other.codes)


def test_rq_kmeans_balanced_levels_are_balanced():
  x = _blobs(n=512, d=4, centers=3, seed=2)
  res = rq_kmeans.rq_kmeans(x, levels=1, codebook_size=8, seed=0, balanced=True,
                            sinkhorn_iters=100)
  assert kmeans.balanced_fraction(res.codes[:, 0], 8) < 1.5


def test_reseed_dead_codes():
  book = jnp.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
  codes = jnp.array([0, 0, 1])
  res = jnp.array([[7.0, 7.0], [8.0, 8.0], [9.0, 9.0]])
  new, count = vq.reseed_dead_codes(jax.random.PRNGKey(0), book, codes, res)
  assert int(count) == 1
  np.testing.assert_array_equal(new[:2], book[:2])
  assert any(np.array_equal(np.asarray(new[2]), np.asarray(r)) for r in res)


def test_residual_quantize_straight_through_gradient():
  z = jnp.array([[0.9, 0.1], [-1.2, 0.3]])
  books = jnp.array([[[1.0, 0.0], [-1.0, 0.0]], [[0.0, 0.1], [0.0, 0.3]]])
  codes, quant, losses, _ = vq.residual_quantize(z, books, 0.25)
  np.testing.assert_array_equal(codes, [[0, 0], [1, 1]])
  np.testing.assert_allclose(quant, [[1.0, 0.1], [-1.0, 0.3]])
  g = jax.grad(lambda z: jnp.sum(vq.straight_through(z, quant) * jnp.array([2.0, 3.0])))(z)
  np.testing.assert_allclose(g, [[2.0, 3.0], [2.0, 3.0]])
  assert losses.shape == (2,)


def test_rq_vae_deterministic_and_error_falls_with_levels():
  x = _blobs(n=256, d=12, centers=10, seed=3)
  kw = dict(levels=3, codebook_size=8, latent_dim=6, hidden=(16,), epochs=6, batch_size=64,
            reseed_every=2)
  a = rq_vae.train_rq_vae(x, seed=0, **kw)
  b = rq_vae.train_rq_vae(x, seed=0, **kw)
  np.testing.assert_array_equal(a.codes, b.codes)
  np.testing.assert_array_equal(a.losses, b.losses)
  assert a.codes.shape == (256, 3) and (a.codes >= 0).all() and (a.codes < 8).all()
  assert np.all(np.diff(a.recon_by_level) < 0)
  assert a.losses[-1] < a.losses[0]


@pytest.mark.slow
def test_gensar_shared_codes_and_collision_rounds():
  rng = np.random.default_rng(0)
  xs = _blobs(n=300, d=10, centers=8, seed=4)
  xc = rng.normal(size=(300, 6)).astype(np.float32)
  kw = dict(codebook_size=8, latent_dim=4, hidden=(16,), epochs=4, batch_size=100,
            eval_every=2, sinkhorn_iters=20, collision_rounds=5)
  a = gensar.train_gensar(xs, xc, seed=0, **kw)
  b = gensar.train_gensar(xs, xc, seed=0, **kw)
  np.testing.assert_array_equal(a.semantic, b.semantic)
  np.testing.assert_array_equal(a.collaborative, b.collaborative)
  assert a.shared.shape == (300, 2) and a.semantic.shape == (300, 2)
  assert (a.semantic < 8).all() and (a.collaborative >= 0).all()
  # Collision handling only touches the last specific level, and never adds collisions.
  np.testing.assert_array_equal(a.semantic[:, 0], a.semantic_before[:, 0])
  for before, after in ((a.semantic_before, a.semantic),
                        (a.collaborative_before, a.collaborative)):
    assert (stats.collision_rate(np.c_[a.shared, after])
            <= stats.collision_rate(np.c_[a.shared, before]))
  assert 0 <= a.rounds["semantic"] <= 5


def test_resolve_collisions_separates_a_group():
  # Four items share every code; their last-level residuals sit near different codes.
  book = np.eye(4, dtype=np.float32) * 3
  last_in = book + 0.1
  prefix = np.zeros((4, 2), np.int32)
  codes = np.zeros((4, 2), np.int32)
  new, rounds = gensar.resolve_collisions(prefix, codes, last_in, book, rounds=3)
  assert sorted(new[:, 1].tolist()) == [0, 1, 2, 3]
  np.testing.assert_array_equal(new[:, 0], 0)
  assert rounds == 1
