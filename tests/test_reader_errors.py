"""Every bad input gives one line naming file:line:field (or the config key)."""

import gzip
import json

import pytest

from genret_jax.config import get_base_config
from genret_jax.data import readers
from genret_jax.data.readers import amazon, io
from genret_jax.errors import ConfigError, DataError

MOVIES = "movieId,title,genres\n1,Heat (1995),Action\n2,Up (2009),Comedy\n"
RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,100\n1,2,3.0,200\n"
TAGS = "userId,movieId,tag,timestamp\n1,1,heist,150\n"


def movielens(tmp_path, movies=MOVIES, ratings=RATINGS, tags=TAGS):
  d = tmp_path / "ml"
  d.mkdir()
  for name, text in (("movies.csv", movies), ("ratings.csv", ratings), ("tags.csv", tags)):
    if text is not None:
      (d / name).write_bytes(text if isinstance(text, bytes) else text.encode())
  return d


def generic(tmp_path, items, events, items_name="items.jsonl", events_name="events.jsonl"):
  d = tmp_path / "g"
  d.mkdir()
  for name, rows in ((items_name, items), (events_name, events)):
    data = rows if isinstance(rows, bytes) else "".join(
        (json.dumps(r) if isinstance(r, dict) else r) + "\n" for r in rows).encode()
    if name.endswith(".gz"):
      data = gzip.compress(data)
    (d / name).write_bytes(data)
  return d


def load(source, path, **knobs):
  c = get_base_config().data
  c.source = source
  c.path = str(path)
  for k, v in knobs.items():
    block, key = k.split("__")
    c[block][key] = v
  return readers.load_raw(c)


def expect(exc_type, fn, *parts):
  """Runs fn, checks the error type, that it is one line, and `parts` in order."""
  with pytest.raises(exc_type) as e:
    fn()
  msg = str(e.value)
  assert "\n" not in msg
  prefix = ": ".join(str(p) for p in parts)
  assert msg.startswith(prefix), (msg, prefix)
  return e.value


ITEMS = [{"item_id": "a", "title": "A"}, {"item_id": "b", "title": "B"}]
EVENTS = [{"user_id": "u", "item_id": "a", "timestamp": 1, "behaviour": "rec"},
          {"user_id": "u", "item_id": "b", "timestamp": 2, "behaviour": "search",
           "query": "bee"}]


# ----------------------------------------------------------------------------- missing file


def test_missing_file_movielens(tmp_path):
  d = movielens(tmp_path, tags=None)
  expect(DataError, lambda: load("movielens", d), f"{d / 'tags.csv'}", "missing file")


def test_missing_folder(tmp_path):
  expect(DataError, lambda: load("movielens", tmp_path / "nope"), f"{tmp_path / 'nope'}",
         "missing folder")


def test_missing_file_generic(tmp_path):
  d = generic(tmp_path, ITEMS, EVENTS)
  (d / "events.jsonl").unlink()
  expect(DataError, lambda: load("generic", d), f"{d / 'events.jsonl'}", "missing file")
  expect(DataError, lambda: load("generic", d, generic__events_file="ev.csv"),
         f"{d / 'ev.csv'}", "missing file")


def test_missing_file_amazon(tmp_path):
  d = tmp_path / "amz"
  d.mkdir()
  expect(DataError, lambda: load("amazon", d), f"{d / amazon.ATTRIBUTES_FILE}", "missing file")
  (d / "Beauty.txt").write_text("u a\n")
  expect(DataError, lambda: load("amazon", d, amazon__sequence_file="Beauty.txt"),
         f"{d / amazon.ATTRIBUTES_FILE}", "missing file")


# ----------------------------------------------------------------------------- missing column


def test_missing_column_csv(tmp_path):
  d = movielens(tmp_path, ratings="userId,movieId,rating\n1,1,4.0\n")
  expect(DataError, lambda: load("movielens", d), f"{d / 'ratings.csv'}:1", "timestamp",
         "missing column")


def test_missing_field_jsonl(tmp_path):
  bad = [EVENTS[0], {"user_id": "u", "item_id": "a", "behaviour": "rec"}]
  d = generic(tmp_path, ITEMS, bad)
  expect(DataError, lambda: load("generic", d), f"{d / 'events.jsonl'}:2", "timestamp",
         "missing field")


def test_missing_column_amazon_tsv(tmp_path):
  d = tmp_path / "amz"
  d.mkdir()
  (d / "B.txt").write_text("u a\n")
  (d / amazon.ATTRIBUTES_FILE).write_text("item_id\tbrand\na\tX\n")
  expect(DataError, lambda: load("amazon", d), f"{d / amazon.ATTRIBUTES_FILE}:1", "categories",
         "missing column")


def test_short_row(tmp_path):
  d = movielens(tmp_path, ratings=RATINGS + "1,2,3.0\n")
  expect(DataError, lambda: load("movielens", d), f"{d / 'ratings.csv'}:4", "timestamp",
         "expected 4 fields")


# ----------------------------------------------------------------------------- numbers


def test_non_numeric_timestamp_csv(tmp_path):
  d = movielens(tmp_path, ratings=RATINGS + "1,1,4.0,yesterday\n")
  expect(DataError, lambda: load("movielens", d), f"{d / 'ratings.csv'}:4", "timestamp",
         "not an integer timestamp: 'yesterday'")


def test_non_numeric_timestamp_tags(tmp_path):
  d = movielens(tmp_path, tags=TAGS + "1,2,fun,12.5\n")
  expect(DataError, lambda: load("movielens", d), f"{d / 'tags.csv'}:3", "timestamp",
         "not an integer timestamp: '12.5'")


def test_non_numeric_timestamp_jsonl(tmp_path):
  bad = [EVENTS[0], dict(EVENTS[0], timestamp="2020-01-01")]
  d = generic(tmp_path, ITEMS, bad)
  expect(DataError, lambda: load("generic", d), f"{d / 'events.jsonl'}:2", "timestamp",
         "not an integer timestamp")


def test_non_numeric_rating(tmp_path):
  d = movielens(tmp_path, ratings=RATINGS + "1,1,good,300\n")
  expect(DataError, lambda: load("movielens", d), f"{d / 'ratings.csv'}:4", "rating",
         "not a number")


def test_integer_valued_float_timestamp_is_accepted(tmp_path):
  d = movielens(tmp_path, ratings=RATINGS + "1,1,4.0,300.0\n")
  _, events = load("movielens", d)
  assert 300 in events.timestamp.tolist()


# ----------------------------------------------------------------------------- unknown item


def test_unknown_item_ratings(tmp_path):
  d = movielens(tmp_path, ratings=RATINGS + "1,99,4.0,300\n")
  expect(DataError, lambda: load("movielens", d), f"{d / 'ratings.csv'}:4", "movieId",
         "unknown item id '99'")


def test_unknown_item_tags(tmp_path):
  d = movielens(tmp_path, tags=TAGS + "1,7,fun,300\n")
  expect(DataError, lambda: load("movielens", d), f"{d / 'tags.csv'}:3", "movieId",
         "unknown item id '7'")


def test_unknown_item_generic(tmp_path):
  d = generic(tmp_path, ITEMS, EVENTS + [dict(EVENTS[0], item_id="zz")])
  expect(DataError, lambda: load("generic", d), f"{d / 'events.jsonl'}:3", "item_id",
         "unknown item id 'zz'")


def test_unknown_item_sequence(tmp_path):
  d = tmp_path / "amz"
  d.mkdir()
  (d / "B.txt").write_text("u1 a\nu2 a q\n")
  (d / amazon.ATTRIBUTES_FILE).write_text("item_id\tcategories\na\tX|Y\n")
  expect(DataError, lambda: load("amazon", d), f"{d / 'B.txt'}:2", "item_id",
         "unknown item id 'q'")


# ----------------------------------------------------------------------------- empty query


def test_empty_query_tag(tmp_path):
  d = movielens(tmp_path, tags=TAGS + "1,2,   ,300\n")
  expect(DataError, lambda: load("movielens", d), f"{d / 'tags.csv'}:3", "tag", "empty query")


def test_empty_query_generic(tmp_path):
  d = generic(tmp_path, ITEMS, EVENTS + [dict(EVENTS[1], query="  ")])
  expect(DataError, lambda: load("generic", d), f"{d / 'events.jsonl'}:3", "query",
         "empty query")
  d2 = tmp_path / "g2"
  d2.mkdir()
  (d2 / "items.csv").write_text("item_id,title\na,A\n")
  (d2 / "events.csv").write_text("user_id,item_id,timestamp,behaviour\nu,a,1,search\n")
  expect(DataError, lambda: load("generic", d2), f"{d2 / 'events.csv'}:2", "query",
         "empty query")


def test_rec_event_with_query_and_bad_behaviour(tmp_path):
  d = generic(tmp_path, ITEMS, [dict(EVENTS[0], query="x")])
  expect(DataError, lambda: load("generic", d), f"{d / 'events.jsonl'}:1", "query",
         "a rec event has a query")
  d2 = tmp_path / "other"
  d2.mkdir()
  (d2 / "items.jsonl").write_text(json.dumps(ITEMS[0]) + "\n")
  (d2 / "events.jsonl").write_text(json.dumps(dict(EVENTS[0], behaviour="click")) + "\n")
  expect(DataError, lambda: load("generic", d2), f"{d2 / 'events.jsonl'}:1", "behaviour",
         "unknown behaviour 'click'")


# ----------------------------------------------------------------------------- duplicates


def test_duplicate_item_movies(tmp_path):
  d = movielens(tmp_path, movies=MOVIES + "1,Again (2000),Drama\n")
  expect(DataError, lambda: load("movielens", d), f"{d / 'movies.csv'}:4", "movieId",
         "duplicate item id '1' (first at line 2)")


def test_duplicate_item_generic_and_tsv(tmp_path):
  d = generic(tmp_path, ITEMS + [{"item_id": "a", "title": "again"}], EVENTS)
  expect(DataError, lambda: load("generic", d), f"{d / 'items.jsonl'}:3", "item_id",
         "duplicate item id 'a' (first at line 1)")
  a = tmp_path / "amz"
  a.mkdir()
  (a / "B.txt").write_text("u a\n")
  (a / amazon.ATTRIBUTES_FILE).write_text("item_id\tcategories\na\tX\nb\tY\na\tZ\n")
  expect(DataError, lambda: load("amazon", a), f"{a / amazon.ATTRIBUTES_FILE}:4", "item_id",
         "duplicate item id 'a' (first at line 2)")


def test_duplicate_asin_raw_metadata(tmp_path):
  d = tmp_path / "raw"
  d.mkdir()
  (d / "meta_X.json").write_text(repr({"asin": "A"}) + "\n" + repr({"asin": "A"}) + "\n")
  (d / "X.json").write_text(json.dumps({"reviewerID": "r", "asin": "A",
                                        "unixReviewTime": 1}) + "\n")
  expect(DataError, lambda: load("amazon", d), f"{d / 'meta_X.json'}:2", "asin",
         "duplicate item id 'A'")


def test_duplicate_user_line(tmp_path):
  d = tmp_path / "amz"
  d.mkdir()
  (d / "B.txt").write_text("u a\nv a\nu a\n")
  (d / amazon.ATTRIBUTES_FILE).write_text("item_id\tcategories\na\tX\n")
  expect(DataError, lambda: load("amazon", d), f"{d / 'B.txt'}:3", "user_id",
         "duplicate user id 'u'")


# ----------------------------------------------------------------------------- .gz, bytes


def test_truncated_gz_generic(tmp_path):
  lines = "".join(json.dumps(dict(EVENTS[0], timestamp=t)) + "\n" for t in range(2000))
  blob = gzip.compress(lines.encode(), compresslevel=1)
  d = generic(tmp_path, ITEMS, blob[: len(blob) // 2], events_name="events.jsonl")
  (d / "events.jsonl").rename(d / "events.jsonl.gz")
  err = expect(DataError, lambda: load("generic", d), f"{d / 'events.jsonl.gz'}")
  assert "truncated .gz" in str(err)
  assert err.line is not None and 1 < err.line <= 2000


def test_truncated_gz_amazon_raw(tmp_path):
  d = tmp_path / "raw"
  d.mkdir()
  (d / "meta_X.json.gz").write_bytes(gzip.compress((repr({"asin": "A"}) + "\n").encode())[:-6])
  (d / "X.json").write_text(json.dumps({"reviewerID": "r", "asin": "A",
                                        "unixReviewTime": 1}) + "\n")
  err = expect(DataError, lambda: load("amazon", d), f"{d / 'meta_X.json.gz'}")
  assert "truncated .gz" in str(err)


def test_non_utf8_bytes(tmp_path):
  d = movielens(tmp_path, movies=MOVIES.encode() + b"3,Caf\xe9 (1990),Drama\n")
  expect(DataError, lambda: load("movielens", d), f"{d / 'movies.csv'}:4", "title",
         "invalid utf-8 byte 0xe9")


def test_non_utf8_bytes_jsonl(tmp_path):
  d = generic(tmp_path, ITEMS, b'{"user_id": "u"}\n{"user_id": "\xff"}\n')
  expect(DataError, lambda: load("generic", d), f"{d / 'events.jsonl'}:2",
         "invalid utf-8 byte 0xff")


def test_bad_json_line(tmp_path):
  d = generic(tmp_path, ITEMS, [EVENTS[0], "{not json"])
  expect(DataError, lambda: load("generic", d), f"{d / 'events.jsonl'}:2", "not a JSON object")


def test_gunzip_reads_multi_member(tmp_path):
  p = tmp_path / "x.txt.gz"
  p.write_bytes(gzip.compress(b"a\n") + gzip.compress(b"b\n"))
  assert io.read_text(p) == "a\nb\n"


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("key,value", [
    ("source", "spotify"), ("path", ""), ("max_history", 0),
    ("movielens.min_tag_users", 0), ("movielens.max_item_tags", -1),
    ("simulator.num_users", 0), ("simulator.events_per_user", 0),
    ("simulator.session_length", 0),
    ("amazon.max_description_chars", -5), ("amazon.attributes_file", ""),
    ("simulator.num_items", 0), ("simulator.items_per_query", 3),
    ("simulator.num_clusters", 126), ("simulator.search_fraction", 1.5),
    ("simulator.cooccurrence", -0.1), ("simulator.zipf_exponent", -1.0),
    ("simulator.user_focus", 1.5),
    ("simulator.popularity_kl", -0.5), ("simulator.matching_queries", 2),
    ("simulator.relevant_pairs", 0.5),   # below matching_queries (0.8)
])
def test_config_out_of_range(key, value):
  """(ConfigDict type checks already reject wrongly typed overrides.)"""
  c = get_base_config().data
  if key != "source":
    c.source = "movielens" if key != "path" else "amazon"
    c.path = "/nonexistent" if key != "path" else ""
  if "." in key:
    block, k = key.split(".")
    c[block][k] = value
  else:
    c[key] = value
  with pytest.raises(ConfigError) as e:
    readers.load_raw(c)
  assert str(e.value).startswith(f"config.data.{key}: "), str(e.value)
  assert e.value.key == f"data.{key}"


def test_unreachable_kl():
  c = get_base_config().data
  c.simulator.popularity_kl = 50.0
  with pytest.raises(ConfigError) as e:
    readers.load_raw(c)
  assert str(e.value).startswith("config.data.simulator.popularity_kl: ")


@pytest.mark.parametrize("newline,blank", [("\n", False), ("\r\n", False), ("\n", True)])
def test_line_numbers_with_crlf_and_blank_lines(tmp_path, newline, blank):
  rows = ["userId,movieId,rating,timestamp", "1,1,4.0,100", "1,2,3.0,200"]
  if blank:
    rows.insert(2, "")
  rows.append("1,1,4.0,soon")
  d = movielens(tmp_path, ratings=newline.join(rows) + newline)
  line = 5 if blank else 4
  expect(DataError, lambda: load("movielens", d), f"{d / 'ratings.csv'}:{line}", "timestamp",
         "not an integer timestamp: 'soon'")


def test_empty_generic_files(tmp_path):
  d = generic(tmp_path, [], EVENTS)
  expect(DataError, lambda: load("generic", d), f"{d / 'items.jsonl'}:1", "no rows")
  d2 = tmp_path / "csv"
  d2.mkdir()
  (d2 / "items.csv").write_text("item_id,title\na,A\n")
  (d2 / "events.csv").write_text("user_id,item_id,timestamp,behaviour,query\n")
  expect(DataError, lambda: load("generic", d2), f"{d2 / 'events.csv'}:2", "no rows")
