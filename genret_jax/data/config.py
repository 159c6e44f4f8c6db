"""Defaults of the `data` config block (owned by genret_jax.data).

Every knob is documented in docs/data.md; `genret_jax.data.readers.validate`
checks ranges and raises ConfigError naming the key.
"""

import ml_collections


def movielens_config() -> ml_collections.ConfigDict:
  """MovieLens reader (ml-latest-small / ml-25m / ml-100k)."""
  c = ml_collections.ConfigDict()
  c.min_rating = 0.0          # ratings below are not rec events (0 keeps all)
  c.min_tag_users = 2         # a tag is a query only if >= this many users used it
  c.drop_tags = ("in netflix queue", "netflix queue", "to see", "might like", "want to see",
                 "watched", "seen", "seen more than once", "own", "owned", "my movies",
                 "tivo", "dvd", "on dvd", "bd-r", "bd-video", "dvd-r", "dvd-ram", "dvd-video",
                 "clv", "less than 300 ratings", "erlend's dvds")  # administrative tags
  c.max_item_tags = 10        # tags kept in an item's `tags` text field
  return c


def amazon_config() -> ml_collections.ConfigDict:
  """Amazon reader (sequential layout, or raw McAuley 2014/2018 JSON)."""
  c = ml_collections.ConfigDict()
  c.sequence_file = ""        # sequential layout: '' = the one <Name>.txt in data.path
  c.attributes_file = "derived_item_attributes.tsv"
  c.reviews_file = ""         # raw layout: '' = the one non-meta_ *.json[.gz] in data.path
  c.meta_file = ""            # raw layout: '' = the one meta_*.json[.gz] in data.path
  c.drop_root = True          # raw: drop each category path's first level ("Beauty")
  c.allow_missing_metadata = False  # raw: reviewed asin without metadata -> empty text
  c.max_description_chars = 1000    # raw: cut descriptions (0 = no limit)
  return c


def generic_config() -> ml_collections.ConfigDict:
  """Generic canonical-schema files (JSONL or CSV, optionally .gz)."""
  c = ml_collections.ConfigDict()
  c.items_file = ""           # '' = the one items.{jsonl,csv}[.gz] in data.path
  c.events_file = ""          # '' = the one events.{jsonl,csv}[.gz] in data.path
  return c


def simulator_config() -> ml_collections.ConfigDict:
  """Simulated data (Penha et al. style); see docs/data.md for the model."""
  c = ml_collections.ConfigDict()
  c.num_items = 500
  c.num_users = 1000
  c.events_per_user = 20
  c.num_clusters = 25         # latent recommendation co-occurrence clusters
  c.items_per_query = 4       # relevant items per query (num_items must be a multiple)
  c.session_length = 5        # consecutive events sharing one group (cluster or bundle)
  c.search_fraction = 0.3     # probability that a session is a search session
  c.zipf_exponent = 1.0       # recommendation popularity ~ rank ** -zipf_exponent
  c.cooccurrence = 0.8        # probability an event is drawn from its session's group
  c.user_focus = 0.5          # probability a session keeps the user's previous group
  c.popularity_kl = 0.5       # S1: KL(search popularity || rec popularity), nats
  c.matching_queries = 0.8    # S2: fraction of queries whose items share one rec cluster
  c.relevant_pairs = 0.9      # S3: fraction of relevant pairs co-occurring in both tasks
  return c


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.source = "simulated"      # simulated | movielens | amazon | generic
  c.path = ""                 # raw data folder (not used by `simulated`)
  c.max_history = 20          # events of context kept per example
  c.seed = 0
  c.movielens = movielens_config()
  c.amazon = amazon_config()
  c.generic = generic_config()
  c.simulator = simulator_config()
  return c
