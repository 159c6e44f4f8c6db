"""MovieLens: ml-latest-small / ml-latest / ml-25m and ml-100k layouts.

* Rec events: every rating (optionally only ratings >= `min_rating`), at its
  timestamp.
* Search events: every tag application that survives the noise filter. A
  user's tag on a movie at time t is a query for that movie, issued at t. Tags
  are normalised (lowercase, strip, collapse spaces); repeated (user, movie,
  tag) applications keep the earliest. The filter drops tags listed in
  `drop_tags` (administrative tags such as "in netflix queue") and tags used by
  fewer than `min_tag_users` distinct users.
* Item text: title, genres ("Adventure, Animation"), tags (the movie's kept
  tags, most applied first, at most `max_item_tags`). The tags field is built
  from all tag applications, not only training ones: it is the movie's public
  tag cloud, as a catalog page would show it.

ml-100k has no tag file, so it yields rec events only.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from genret_jax.data import config as data_config
from genret_jax.data.readers import common, io
from genret_jax.data.schema import REC, SEARCH, Catalog, Events
from genret_jax.errors import DataError

DEFAULT_DROP_TAGS = tuple(data_config.movielens_config().drop_tags)

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western")


def detect_layout(path: str | pathlib.Path) -> str:
  """'latest' (ratings.csv, movies.csv, tags.csv) or '100k' (u.data, u.item)."""
  p = io.require_folder(path)
  if any(os.path.lexists(p / n) for n in ("ratings.csv", "movies.csv", "tags.csv")):
    return "latest"
  if os.path.lexists(p / "u.data") or os.path.lexists(p / "u.item"):
    return "100k"
  raise DataError(str(p / "ratings.csv"), "missing file (a MovieLens folder holds "
                  "ratings.csv + movies.csv + tags.csv, or ml-100k's u.data + u.item)")


def read_movielens(path: str | pathlib.Path, *, min_rating: float = 0.0,
                   min_tag_users: int = 2, drop_tags: tuple[str, ...] = DEFAULT_DROP_TAGS,
                   max_item_tags: int = 10) -> tuple[Catalog, Events]:
  """Reads a MovieLens folder (layout detected from its files).

  Args:
    path: folder with ratings.csv, movies.csv, tags.csv (ml-latest*, ml-25m)
      or u.data, u.item (ml-100k).
    min_rating: ratings below this are not rec events (0 keeps all).
    min_tag_users: a normalised tag must be used by at least this many
      distinct users to be a query.
    drop_tags: normalised tags never used as queries.
    max_item_tags: tags kept in an item's `tags` text field.
  """
  p = pathlib.Path(path)
  if detect_layout(p) == "100k":
    return _read_100k(p, min_rating=min_rating)
  for name in ("ratings.csv", "movies.csv", "tags.csv"):
    io.require_file(p / name)
  movies = io.read_table(p / "movies.csv", ["movieId", "title", "genres"])
  movie_ids = movies.column("movieId")
  io.parse_int(movie_ids, table_path=movies.path, lines=movies.lines, field="movieId",
               what="an integer movie id")
  movie_ids = np.asarray([s.strip() for s in movie_ids], dtype=object)
  common.check_unique(movies.path, movie_ids, movies.lines, "movieId")
  index_of = {m: i for i, m in enumerate(movie_ids)}

  ratings = io.read_table(p / "ratings.csv", ["userId", "movieId", "rating", "timestamp"])
  r_users = _int_keys(ratings, "userId")
  r_items = _items(ratings, index_of, movies.path)
  r_score = io.parse_float(ratings.column("rating"), table_path=ratings.path,
                           lines=ratings.lines, field="rating")
  r_time = io.parse_int(ratings.column("timestamp"), table_path=ratings.path,
                        lines=ratings.lines, field="timestamp", what="an integer timestamp")
  keep = r_score >= min_rating

  tags = io.read_table(p / "tags.csv", ["userId", "movieId", "tag", "timestamp"])
  t_users = _int_keys(tags, "userId")
  t_items = _items(tags, index_of, movies.path)
  t_time = io.parse_int(tags.column("timestamp"), table_path=tags.path, lines=tags.lines,
                        field="timestamp", what="an integer timestamp")
  t_text = np.asarray([common.normalize_query(t) for t in tags.columns["tag"]], dtype=object)
  empty = np.nonzero(t_text == "")[0]
  if empty.size:
    raise tags.error(int(empty[0]), "tag", "empty query (the tag is blank after "
                     "normalisation)")
  t_keep = _tag_filter(t_users, t_items, t_time, t_text, min_tag_users, drop_tags)

  catalog = Catalog(item_ids=movie_ids, fields={
      "title": np.asarray([t.strip() for t in movies.columns["title"]], dtype=object),
      "genres": np.asarray([_genres(g) for g in movies.columns["genres"]], dtype=object),
      "tags": _item_tags(t_items[t_keep], t_text[t_keep], len(movie_ids), max_item_tags),
  })
  n_rec, n_search = int(keep.sum()), int(t_keep.sum())
  # Users are all raters and taggers (kept or not), numbered by numeric id.
  events = common.make_events(
      np.concatenate([r_users[keep], t_users[t_keep]]),
      np.concatenate([r_items[keep], t_items[t_keep]]),
      np.concatenate([r_time[keep], t_time[t_keep]]),
      np.concatenate([np.full(n_rec, REC, np.int8), np.full(n_search, SEARCH, np.int8)]),
      np.concatenate([np.full(n_rec, "", dtype=object), t_text[t_keep]]),
      numeric_users=True)
  return catalog, events


def _int_keys(table: io.Table, field: str) -> np.ndarray:
  """Integer id column as canonical decimal strings ("007" -> "7")."""
  v = io.parse_int(table.column(field), table_path=table.path, lines=table.lines, field=field,
                   what="an integer id")
  return v.astype(str).astype(object)


def _items(table: io.Table, index_of: dict[str, int], catalog_path: str) -> np.ndarray:
  keys = np.asarray([s.strip() for s in table.columns["movieId"]], dtype=object)
  idx = io.lookup(index_of, keys)
  common.check_known(table.path, idx, keys, table.lines, "movieId", catalog_path)
  return idx.astype(np.int32)


def _genres(g: str) -> str:
  g = g.strip()
  if g == "(no genres listed)":
    return ""
  return ", ".join(x for x in g.split("|") if x)


def _tag_filter(users, items, times, text, min_tag_users: int,
                drop_tags: tuple[str, ...]) -> np.ndarray:
  """bool[T]: tag applications kept as search events (see module doc)."""
  n = text.shape[0]
  if n == 0:
    return np.zeros(0, bool)
  keep = ~np.isin(text.astype(str), np.asarray([common.normalize_query(t) for t in drop_tags]
                                               + [""], dtype=str))
  # Earliest application of each (user, item, tag).
  key = np.char.add(np.char.add(users.astype(str), "\t"),
                    np.char.add(np.char.add(items.astype(str), "\t"), text.astype(str)))
  order = np.lexsort((np.arange(n), times, key))
  first = np.ones(n, bool)
  first[1:] = key[order][1:] != key[order][:-1]
  is_first = np.empty(n, bool)
  is_first[order] = first
  keep &= is_first
  # Distinct users per tag.
  tag_user = np.unique(np.stack([text.astype(str), users.astype(str)], 1), axis=0)
  tags, n_users = np.unique(tag_user[:, 0], return_counts=True)
  popular = tags[n_users >= min_tag_users]
  keep &= np.isin(text.astype(str), popular)
  return keep


def _item_tags(items: np.ndarray, text: np.ndarray, num_items: int, limit: int) -> np.ndarray:
  """str[num_items]: each movie's kept tags, most applied first, ', '-joined."""
  out = np.full(num_items, "", dtype=object)
  if items.size == 0 or limit <= 0:
    return out
  pairs, counts = np.unique(np.stack([items.astype(np.int64).astype(str), text.astype(str)], 1),
                            axis=0, return_counts=True)
  item_of = pairs[:, 0].astype(np.int64)
  order = np.lexsort((pairs[:, 1], -counts, item_of))
  by_item: dict[int, list[str]] = {}
  for k in order:
    lst = by_item.setdefault(int(item_of[k]), [])
    if len(lst) < limit:
      lst.append(str(pairs[k, 1]))
  for i, lst in by_item.items():
    out[i] = ", ".join(lst)
  return out


def _read_100k(p: pathlib.Path, *, min_rating: float) -> tuple[Catalog, Events]:
  """ml-100k: u.data (user item rating timestamp, tab) + u.item ('|', latin-1)."""
  io.require_file(p / "u.data")
  io.require_file(p / "u.item")
  genres = ML100K_GENRES
  if os.path.lexists(p / "u.genre"):
    gt = io.read_table(p / "u.genre", ["name", "id"], delimiter="|", encoding="latin-1",
                       header=["name", "id"])
    gid = io.parse_int(gt.column("id"), table_path=gt.path, lines=gt.lines, field="id")
    bad = np.flatnonzero((gid < 0) | (gid >= len(gid)))
    if bad.size:
      raise gt.error(int(bad[0]), "id", f"genre id {int(gid[bad[0]])} is not in 0..{len(gid) - 1} "
                     "(u.genre numbers its genres 0, 1, ...)")
    common.check_unique(gt.path, gid.astype(str), gt.lines, "id", what="genre id")
    names = np.empty(int(gid.max()) + 1 if gid.size else 0, dtype=object)
    names[gid] = gt.column("name")
    genres = tuple(str(g) for g in names)
  header = ["movie_id", "title", "release_date", "video_release_date", "imdb_url",
            *[f"genre:{g}" for g in genres]]
  items = io.read_table(p / "u.item", ["movie_id", "title"], delimiter="|",
                        encoding="latin-1", header=header)
  movie_ids = np.asarray([s.strip() for s in items.columns["movie_id"]], dtype=object)
  io.parse_int(movie_ids, table_path=items.path, lines=items.lines, field="movie_id",
               what="an integer movie id")
  common.check_unique(items.path, movie_ids, items.lines, "movie_id")
  flags = np.stack([io.parse_int(items.column(f"genre:{g}"), table_path=items.path,
                                 lines=items.lines, field=f"genre:{g}") for g in genres], 1)
  genre_text = np.asarray([", ".join(g for g, f in zip(genres, row) if f and g != "unknown")
                           for row in flags], dtype=object)
  index_of = {m: i for i, m in enumerate(movie_ids)}
  data = io.read_table(p / "u.data", ["user_id", "item_id", "rating", "timestamp"],
                       delimiter="\t", header=["user_id", "item_id", "rating", "timestamp"])
  users = _int_keys(data, "user_id")
  keys = np.asarray([s.strip() for s in data.columns["item_id"]], dtype=object)
  idx = io.lookup(index_of, keys)
  common.check_known(data.path, idx, keys, data.lines, "item_id", items.path)
  score = io.parse_float(data.column("rating"), table_path=data.path, lines=data.lines,
                         field="rating")
  time = io.parse_int(data.column("timestamp"), table_path=data.path, lines=data.lines,
                      field="timestamp", what="an integer timestamp")
  keep = score >= min_rating
  n = int(keep.sum())
  catalog = Catalog(item_ids=movie_ids, fields={
      "title": np.asarray([t.strip() for t in items.columns["title"]], dtype=object),
      "genres": genre_text,
      "tags": np.full(len(movie_ids), "", dtype=object),
  })
  events = common.make_events(users[keep], idx[keep], time[keep], np.full(n, REC, np.int8),
                              np.full(n, "", dtype=object), numeric_users=True)
  return catalog, events
