"""Simulated search + recommendation data with controllable task alignment.

In the spirit of Penha et al. (RecSys 2024), whose exact generator is not
public; docs/data.md describes the model and how each knob is realised.

World (built once from the seed):
  * Queries and clusters. Items are partitioned into G = num_items /
    items_per_query *query sets* (a query's relevant items) and the query sets
    into `num_clusters` recommendation co-occurrence clusters (balanced), so
    every cluster is a union of query sets. Then a fraction 1 - S2 of the
    query sets is regrouped cyclically so that each takes its items from
    different clusters: S2 (`matching_queries`) is the fraction of queries
    whose relevant items all lie in one cluster.
  * Bundles. Relevant pairs of a matching query co-occur in recommendation
    through their cluster. To reach S3 (`relevant_pairs`, the fraction of
    relevant pairs that co-occur in both tasks; every query has the same
    number of pairs, so it is a fraction of queries) the query sets of
    round(S3 * G) - #matching non-matching queries also become recommendation
    *bundles*: extra co-occurrence groups. S3 >= S2 by construction.
  * Popularity. Recommendation popularity is Zipf: p_rec(i) ~ rank_i ** -a.
    Search popularity is the geometric interpolation p_search ~ p_rec ** (1 -
    lam) * q ** lam from p_rec towards q, the same Zipf law over an independent
    item ordering; KL(p_search || p_rec) grows monotonically with lam, which
    is solved by bisection so the KL equals S1 (`popularity_kl`). Up to lam = 1
    (S1 <= KL(q || p_rec), ~2.5 nats for 500 items) the search law keeps a
    Zipf-like spread (the earlier tilt p_rec * q ** lam put 56% of the search
    traffic on one item at the default S1). Both are the exact marginals of
    the generated events.
  * Text. Pseudo-words: each cluster has 3 words, each item 2, each query 2.
    Item fields: title = item words, categories = cluster words, description
    = the words of its query. A query's phrase is its 2 words.

Events: each user has `events_per_user` events in sessions of
`session_length`; a session is a search session with probability
`search_fraction`, else recommendation. With probability `user_focus` it
keeps the group of the user's previous session of the same behaviour
(persistent interests); otherwise it picks a group (cluster or bundle) with
probability proportional to the group's mass under its behaviour's
popularity; each event then draws, with probability `cooccurrence`, an item
of that group (proportional to popularity x membership share), else an item
from the whole catalog. Memberships split an item's mass between its cluster
and its bundle, so the item marginals stay exactly p_rec / p_search. A search
event's query is its item's query phrase. Timestamps are positions 0..L-1
(`synthetic_time`).
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from genret_jax.data.schema import REC, SEARCH, Catalog, Events
from genret_jax.errors import ConfigError

BUNDLE_SHARE = 0.5        # share of a bundled item's mass drawn through its bundle
WORDS_PER_CLUSTER = 3
WORDS_PER_ITEM = 2
WORDS_PER_QUERY = 2
_CONSONANTS = np.asarray(list("bdfgklmnprstvz") + ["ch", "sh", "tr", "pl"])
_VOWELS = np.asarray(list("aeiou") + ["ai", "ou"])


@dataclasses.dataclass(frozen=True)
class World:
  """The latent structure behind the simulated events.

  Attributes:
    cluster: int32[N], each item's recommendation cluster.
    query_items: int32[G, k], each query's relevant items.
    query_of_item: int32[N], the query an item is relevant to.
    matching: bool[G], the query's items share one cluster.
    bundled: bool[G], the query's items also form a recommendation bundle.
    p_rec, p_search: float64[N], item popularity of each behaviour.
    tilt: the solved exponent lam of the search popularity.
    group_of, member, share: int64[M], int64[M], float64[M]: group
      memberships (group g < num_clusters is a cluster, later ones bundles).
    num_groups: clusters + bundles.
    words: dict name -> str array: 'cluster' [C, 3], 'item' [N, 2], 'query' [G, 2].
  """
  cluster: np.ndarray
  query_items: np.ndarray
  query_of_item: np.ndarray
  matching: np.ndarray
  bundled: np.ndarray
  p_rec: np.ndarray
  p_search: np.ndarray
  tilt: float
  group_of: np.ndarray
  member: np.ndarray
  share: np.ndarray
  num_groups: int
  words: dict

  @property
  def popularity_kl(self) -> float:
    """Achieved S1: KL(p_search || p_rec) in nats."""
    return kl_divergence(self.p_search, self.p_rec)

  @property
  def matching_fraction(self) -> float:
    """Achieved S2."""
    return float(self.matching.mean())

  @property
  def relevant_pair_fraction(self) -> float:
    """Achieved S3 (all queries have the same number of relevant pairs)."""
    return float((self.matching | self.bundled).mean())


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
  """KL(p || q) in nats for distributions over the same support."""
  p = np.asarray(p, np.float64)
  q = np.asarray(q, np.float64)
  m = p > 0
  return float(np.sum(p[m] * (np.log(p[m]) - np.log(q[m]))))


def popularity_kl(events: Events, num_items: int, smoothing: float = 0.5) -> float:
  """Empirical S1 of any Events: KL(search item freq || rec item freq).

  Frequencies are additively smoothed by `smoothing` per item so items seen
  in one behaviour only keep the KL finite.
  """
  rec = np.bincount(events.item[events.behaviour == REC], minlength=num_items) + smoothing
  srch = np.bincount(events.item[events.behaviour == SEARCH], minlength=num_items) + smoothing
  return kl_divergence(srch / srch.sum(), rec / rec.sum())


def validate(cfg: ml_collections.ConfigDict, prefix: str = "data.simulator") -> None:
  """ConfigError naming the first out-of-range knob."""
  def ints(name, lo):
    v = cfg[name]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
      raise ConfigError(f"{prefix}.{name}", f"must be an integer >= {lo}, got {v!r}")

  def unit(name):
    v = cfg[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
      raise ConfigError(f"{prefix}.{name}", f"must be a number in [0, 1], got {v!r}")

  ints("num_items", 2)
  ints("num_users", 1)
  ints("events_per_user", 1)
  ints("num_clusters", 1)
  ints("items_per_query", 2)
  ints("session_length", 1)
  for name in ("search_fraction", "cooccurrence", "user_focus", "matching_queries",
               "relevant_pairs"):
    unit(name)
  for name in ("zipf_exponent", "popularity_kl"):
    v = cfg[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < np.inf:
      raise ConfigError(f"{prefix}.{name}", f"must be a finite number >= 0, got {v!r}")
  if cfg.num_items % cfg.items_per_query:
    raise ConfigError(f"{prefix}.items_per_query", f"must divide num_items "
                      f"({cfg.num_items}), got {cfg.items_per_query}")
  num_queries = cfg.num_items // cfg.items_per_query
  if cfg.num_clusters > num_queries:
    raise ConfigError(f"{prefix}.num_clusters", f"must be <= num_items / items_per_query "
                      f"= {num_queries} (each cluster holds whole query sets), got "
                      f"{cfg.num_clusters}")
  if cfg.relevant_pairs < cfg.matching_queries:
    raise ConfigError(f"{prefix}.relevant_pairs", f"must be >= matching_queries "
                      f"({cfg.matching_queries}): a matching query's relevant pairs share a "
                      f"cluster, so they always co-occur in both tasks; got {cfg.relevant_pairs}")


def _pseudo_words(rng: np.random.Generator, n: int) -> np.ndarray:
  """n distinct pronounceable words of 2-3 consonant-vowel syllables.

  Words get up to S > 3 syllables (2..S, uniform) when n exceeds a quarter of
  the 2-3 syllable inventory (126^2 + 126^3 = 2.0M words; 1M items need 2.65M),
  so that distinct draws stay fast; smaller catalogs draw exactly as before.
  """
  syllables = len(_CONSONANTS) * len(_VOWELS)
  longest = 3
  while 4 * n > sum(syllables ** k for k in range(2, longest + 1)):
    longest += 1
  out: list[str] = []
  seen: set[str] = set()
  while len(out) < n:
    m = 2 * (n - len(out)) + 16
    syl = np.char.add(_CONSONANTS[rng.integers(0, len(_CONSONANTS), (m, longest))],
                      _VOWELS[rng.integers(0, len(_VOWELS), (m, longest))])
    if longest == 3:
      length = np.where(rng.random(m) < 0.5, 3, 2)
    else:
      length = rng.integers(2, longest + 1, m)
    words = syl[:, 0]
    for k in range(1, longest):
      words = np.char.add(words, np.where(length > k, syl[:, k], ""))
    for w in words.tolist():
      if w not in seen:
        seen.add(w)
        out.append(w)
  return np.asarray(out[:n], dtype=object)


def _solve_tilt(p_rec: np.ndarray, log_q: np.ndarray, target: float) -> tuple[np.ndarray, float]:
  """p ~ p_rec * exp(lam * log_q) with KL(p || p_rec) = target (bisection).

  log_q: float[N], the tilt's statistic (log q - log p_rec for the geometric
  path towards q)."""
  def tilt(lam):
    logits = np.log(p_rec) + lam * log_q
    logits -= logits.max()
    p = np.exp(logits)
    return p / p.sum()

  if target <= 0.0:
    return p_rec.copy(), 0.0
  hi = 1.0
  while kl_divergence(tilt(hi), p_rec) < target:
    hi *= 2.0
    if hi > 1e4:
      raise ConfigError("data.simulator.popularity_kl",
                        f"{target} nats is beyond the largest reachable KL "
                        f"({kl_divergence(tilt(hi), p_rec):.3f}) for this catalog")
  lo = 0.0
  for _ in range(100):
    mid = 0.5 * (lo + hi)
    if kl_divergence(tilt(mid), p_rec) < target:
      lo = mid
    else:
      hi = mid
  lam = 0.5 * (lo + hi)
  return tilt(lam), lam


def build_world(cfg: ml_collections.ConfigDict, seed: int) -> World:
  """The latent structure (see module doc). cfg is the `data.simulator` block."""
  validate(cfg)
  rng = np.random.default_rng([seed, 0x5EA4C4])
  n, k, c = cfg.num_items, cfg.items_per_query, cfg.num_clusters
  g = n // k
  # Query sets, and clusters as unions of whole query sets.
  qitems = rng.permutation(n).reshape(g, k)
  gcluster = rng.permutation(np.arange(g) % c)
  cluster = np.empty(n, np.int32)
  cluster[qitems] = gcluster[:, None]
  # Non-matching queries: cyclic regrouping of the chosen sets, each cluster's
  # sets spread evenly along the cycle so consecutive sets differ in cluster.
  n_match = int(round(cfg.matching_queries * g))
  non = rng.permutation(g)[:g - n_match]
  if non.size >= 2:
    cl = gcluster[non]
    srt = np.argsort(cl, kind="stable")
    occ = np.empty(non.size, np.int64)
    occ[srt] = np.arange(non.size) - np.searchsorted(cl[srt], cl[srt])
    spread = (occ + 0.5) / np.bincount(cl, minlength=c)[cl]
    non = non[np.lexsort((rng.permutation(c)[cl], spread))]
    old = qitems[non]
    j = np.arange(non.size)[:, None]
    t = np.arange(k)[None, :]
    qitems[non] = old[(j + t) % non.size, t]
  matching = np.all(cluster[qitems] == cluster[qitems][:, :1], axis=1)
  # Bundles: extra rec co-occurrence for non-matching queries up to S3.
  n_bundle = int(np.clip(round(cfg.relevant_pairs * g) - matching.sum(), 0, (~matching).sum()))
  bundled = np.zeros(g, bool)
  bundled[rng.permutation(np.nonzero(~matching)[0])[:n_bundle]] = True
  query_of_item = np.empty(n, np.int32)
  query_of_item[qitems] = np.arange(g, dtype=np.int32)[:, None]
  # Popularity.
  ranks = rng.permutation(n) + 1.0
  p_rec = ranks ** -float(cfg.zipf_exponent)
  p_rec /= p_rec.sum()
  # Search popularity moves along the geometric path p_rec^(1-lam) * q^lam
  # towards q, the same Zipf law over an independent ordering: at lam <= 1 it
  # stays a Zipf-like law (no item gains more than its Zipf share), and the
  # KL to p_rec grows monotonically with lam (an exponential family in lam).
  log_q = -max(float(cfg.zipf_exponent), 1.0) * np.log(rng.permutation(n) + 1.0)
  p_search, lam = _solve_tilt(p_rec, log_q - np.log(p_rec), float(cfg.popularity_kl))
  # Group memberships: item -> its cluster (+ its bundle, sharing the mass).
  item_bundled = bundled[query_of_item]
  bundle_index = np.cumsum(bundled) - 1 + c
  b_items = np.nonzero(item_bundled)[0]
  group_of = np.concatenate([cluster.astype(np.int64), bundle_index[query_of_item[b_items]]])
  member = np.concatenate([np.arange(n), b_items]).astype(np.int64)
  share = np.concatenate([np.where(item_bundled, 1.0 - BUNDLE_SHARE, 1.0),
                          np.full(b_items.size, BUNDLE_SHARE)])
  order = np.lexsort((member, group_of))
  words = _pseudo_words(rng, c * WORDS_PER_CLUSTER + n * WORDS_PER_ITEM + g * WORDS_PER_QUERY)
  a, b = c * WORDS_PER_CLUSTER, c * WORDS_PER_CLUSTER + n * WORDS_PER_ITEM
  return World(
      cluster=cluster, query_items=qitems.astype(np.int32), query_of_item=query_of_item,
      matching=matching, bundled=bundled, p_rec=p_rec, p_search=p_search, tilt=lam,
      group_of=group_of[order], member=member[order], share=share[order],
      num_groups=c + n_bundle,
      words={"cluster": words[:a].reshape(c, WORDS_PER_CLUSTER),
             "item": words[a:b].reshape(n, WORDS_PER_ITEM),
             "query": words[b:].reshape(g, WORDS_PER_QUERY)})


def _group_sampler(world: World, p: np.ndarray):
  """(group masses float[num_groups], draw(group int[...], u float[...]) -> item)."""
  w = world.share * p[world.member]
  mass = np.bincount(world.group_of, weights=w, minlength=world.num_groups)
  cum = np.cumsum(w)
  start = np.searchsorted(world.group_of, np.arange(world.num_groups))
  before = np.concatenate([[0.0], cum])[start]
  within = (cum - before[world.group_of]) / mass[world.group_of]
  last = np.ones(world.group_of.size, bool)
  last[:-1] = world.group_of[1:] != world.group_of[:-1]
  within[last] = 1.0
  keys = world.group_of + within

  def draw(group, u):
    pos = np.searchsorted(keys, group + u, side="right")
    return world.member[np.minimum(pos, keys.size - 1)]

  return mass / mass.sum(), draw


def _draw_global(p: np.ndarray, u: np.ndarray) -> np.ndarray:
  cum = np.cumsum(p)
  cum[-1] = 1.0
  return np.minimum(np.searchsorted(cum, u, side="right"), p.size - 1)


def _persist(fresh: np.ndarray, is_search: np.ndarray, keep: np.ndarray) -> np.ndarray:
  """int[U, S] session groups: a session flagged `keep` reuses the group of the
  user's previous session of the same behaviour, others take their fresh draw.

  The chain starts and refreshes from the behaviour's group distribution, so
  each session's group keeps exactly that distribution.
  """
  s = np.arange(fresh.shape[1])
  out = fresh.copy()
  for mask in (is_search, ~is_search):
    first = mask & (np.cumsum(mask, axis=1) == 1)
    anchor = mask & (~keep | first)
    last = np.maximum.accumulate(np.where(anchor, s, -1), axis=1)
    src = np.take_along_axis(fresh, np.maximum(last, 0), axis=1)
    out = np.where(mask, src, out)
  return out


def catalog_of(world: World) -> Catalog:
  """Item ids 'i0000'.. and text fields title / categories / description."""
  n = world.cluster.shape[0]
  width = len(str(n - 1))
  join = lambda a: np.asarray([" ".join(r) for r in a.tolist()], dtype=object)  # noqa: E731
  return Catalog(
      item_ids=np.asarray([f"i{i:0{width}d}" for i in range(n)], dtype=object),
      fields={"title": join(world.words["item"]),
              "categories": join(world.words["cluster"])[world.cluster],
              "description": join(world.words["query"])[world.query_of_item]})


def simulate_world(cfg: ml_collections.ConfigDict, seed: int = 0
                   ) -> tuple[Catalog, Events, World]:
  """Catalog, Events and the World that generated them (for analyses/tests)."""
  world = build_world(cfg, seed)
  rng = np.random.default_rng([seed, 0xE7E475])
  u_n, length, sl = cfg.num_users, cfg.events_per_user, cfg.session_length
  n_sess = -(-length // sl)
  is_search = rng.random((u_n, n_sess)) < cfg.search_fraction
  rec_mass, rec_draw = _group_sampler(world, world.p_rec)
  srch_mass, srch_draw = _group_sampler(world, world.p_search)
  fresh = np.where(is_search, _draw_global(srch_mass, rng.random((u_n, n_sess))),
                   _draw_global(rec_mass, rng.random((u_n, n_sess))))
  keep = np.random.default_rng([seed, 0xF0C05]).random((u_n, n_sess)) < cfg.user_focus
  sess_group = _persist(fresh, is_search, keep)
  sess = np.arange(length) // sl
  search = is_search[:, sess]                        # bool[U, L]
  group = sess_group[:, sess]
  in_group = rng.random((u_n, length)) < cfg.cooccurrence
  u = rng.random((u_n, length))
  item = np.where(
      in_group,
      np.where(search, srch_draw(group, u), rec_draw(group, u)),
      np.where(search, _draw_global(world.p_search, u), _draw_global(world.p_rec, u)))
  phrases = np.asarray([" ".join(r) for r in world.words["query"].tolist()], dtype=object)
  query = np.where(search, phrases[world.query_of_item[item]], "").astype(object)
  width = len(str(u_n - 1))
  events = Events(
      user=np.repeat(np.arange(u_n, dtype=np.int32), length),
      item=item.reshape(-1).astype(np.int32),
      timestamp=np.tile(np.arange(length, dtype=np.int64), u_n),
      behaviour=np.where(search, SEARCH, REC).reshape(-1).astype(np.int8),
      query=query.reshape(-1),
      user_ids=np.asarray([f"u{i:0{width}d}" for i in range(u_n)], dtype=object),
      synthetic_time=True)
  return catalog_of(world), events, world


def simulate(config: ml_collections.ConfigDict, seed: int | None = None
             ) -> tuple[Catalog, Events]:
  """Simulated (Catalog, Events).

  Args:
    config: the `data` block (its `simulator` sub-block and `seed` are used)
      or a bare `data.simulator` block.
    seed: overrides `config.seed` (default 0 for a bare simulator block).
  """
  if "simulator" in config:
    sim, default_seed = config.simulator, config.get("seed", 0)
  else:
    sim, default_seed = config, 0
  cat, ev, _ = simulate_world(sim, int(default_seed if seed is None else seed))
  return cat, ev
