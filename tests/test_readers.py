"""Readers: real data counts and order, small synthetic files of every layout."""

import dataclasses
import gzip
import json

import numpy as np
import pytest

from genret_jax.config import get_base_config
from genret_jax.data import readers
from genret_jax.data.readers import amazon, category_query, normalize_query
from genret_jax.data.readers.common import check_catalog_events
from genret_jax.data.schema import REC, SEARCH
from genret_jax.errors import DataError


def data_config(source, path=""):
  c = get_base_config().data
  c.source = source
  c.path = str(path)
  return c


def assert_sorted(events):
  """Sorted by (user, timestamp)."""
  key = events.user.astype(np.int64) * (1 << 40) + (events.timestamp - events.timestamp.min())
  assert np.all(np.diff(key) >= 0)


def user_events(events, catalog, user_id):
  """[(behaviour, item id, timestamp, query)] of one original user id."""
  u = int(np.nonzero(events.user_ids == user_id)[0][0])
  m = events.user == u
  return list(zip(events.behaviour[m].tolist(), catalog.item_ids[events.item[m]].tolist(),
                  events.timestamp[m].tolist(), events.query[m].tolist()))


# ----------------------------------------------------------------------------- text


def test_category_query_examples():
  assert category_query(["Skin Care", "Face", "Creams & Moisturizers"]) == \
      "skin care face creams moisturizers"
  assert category_query(["Makeup", "Nails", "Nail Polish"]) == "makeup nails nail polish"
  # Repeated words once, stopwords gone, apostrophes kept inside words.
  assert category_query(["Hair Care", "Hair & Scalp Treatments", "Women's", "For the Hair"]) == \
      "hair care scalp treatments women's"
  assert category_query([]) == ""
  assert normalize_query("  Dark   Comedy\t") == "dark comedy"


# ----------------------------------------------------------------------------- MovieLens


def test_movielens_latest_small(movielens_dir):
  catalog, events = readers.load_raw(data_config("movielens", movielens_dir))
  # Verified against the files: 9,742 rows in movies.csv, 100,836 ratings,
  # 610 users; 3,683 tag applications -> 1,808 kept (302 distinct tags) by
  # the default filter (checked with an independent csv.DictReader script).
  assert catalog.num_items == 9742
  assert events.num_users == 610
  rec = events.behaviour == REC
  assert int(rec.sum()) == 100836
  assert int((~rec).sum()) == 1808
  assert len(set(events.query[~rec])) == 302
  assert events.synthetic_time is False
  assert_sorted(events)
  assert events.user_ids[:3].tolist() == ["1", "2", "3"]
  toy = int(np.nonzero(catalog.item_ids == "1")[0][0])
  assert catalog.fields["title"][toy] == "Toy Story (1995)"
  assert catalog.fields["genres"][toy] == "Adventure, Animation, Children, Comedy, Fantasy"
  assert catalog.fields["tags"][toy] == "pixar, fun"
  # First line of ratings.csv: 1,1,4.0,964982703.
  assert (REC, "1", 964982703, "") in user_events(events, catalog, "1")
  # First lines of tags.csv: 2,60756,funny,1445714994 / 2,60756,Highly quotable,...
  ev2 = user_events(events, catalog, "2")
  assert (SEARCH, "60756", 1445714994, "funny") in ev2
  assert (SEARCH, "60756", 1445714996, "highly quotable") in ev2
  q = events.query[~rec]
  assert all(s and s == normalize_query(s) for s in q)
  assert "in netflix queue" not in set(q)


def _write_ml_latest(d, tags=True):
  d.mkdir(exist_ok=True)
  (d / "movies.csv").write_text(
      'movieId,title,genres\n10,"Heat, The (1995)",Action|Crime\n20,Up (2009),'
      "(no genres listed)\n30,Alien (1979),Horror|Sci-Fi\n", encoding="utf-8")
  (d / "ratings.csv").write_text(
      "userId,movieId,rating,timestamp\n7,20,4.0,300\n7,10,2.5,100\n3,30,5,50\n"
      "7,30,1.0,100\n", encoding="utf-8")
  if tags:
    (d / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n7,10,  Heist  Movie,150\n3,10,heist movie,60\n"
        "3,10,HEIST movie,70\n7,30,In Netflix Queue,90\n3,30,in netflix queue,40\n"
        "3,30,space,45\n", encoding="utf-8")
  return d


def test_movielens_small_layout(tmp_path):
  d = _write_ml_latest(tmp_path / "ml")
  catalog, events = readers.read_movielens(d)
  assert catalog.item_ids.tolist() == ["10", "20", "30"]
  assert catalog.fields["title"].tolist() == ["Heat, The (1995)", "Up (2009)", "Alien (1979)"]
  assert catalog.fields["genres"].tolist() == ["Action, Crime", "", "Horror, Sci-Fi"]
  # "heist movie": 2 users -> kept (user 3's repeat at t=70 dropped);
  # "in netflix queue": administrative; "space": one user.
  assert catalog.fields["tags"].tolist() == ["heist movie", "", ""]
  assert events.user_ids.tolist() == ["3", "7"]
  assert user_events(events, catalog, "3") == [
      (REC, "30", 50, ""), (SEARCH, "10", 60, "heist movie")]
  # Ties at t=100 keep file order (ratings before tags).
  assert user_events(events, catalog, "7") == [
      (REC, "10", 100, ""), (REC, "30", 100, ""), (SEARCH, "10", 150, "heist movie"),
      (REC, "20", 300, "")]
  _, ev1 = readers.read_movielens(d, min_tag_users=1, drop_tags=())
  assert sorted(ev1.query[ev1.behaviour == SEARCH].tolist()) == [
      "heist movie", "heist movie", "in netflix queue", "in netflix queue", "space"]
  _, ev_hi = readers.read_movielens(d, min_rating=3.0)
  assert int((ev_hi.behaviour == REC).sum()) == 2


def test_movielens_100k_layout(tmp_path):
  d = tmp_path / "ml-100k"
  d.mkdir()
  flags_a = "|".join(["0", "0", "0", "1"] + ["0"] * 15)   # Animation
  flags_b = "|".join(["0", "1", "0", "0", "0", "1"] + ["0"] * 13)  # Action, Comedy
  (d / "u.item").write_bytes(
      f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags_a}\n"
      f"2|Am\xe9lie (2001)|01-Jan-2001||http://y|{flags_b}\n".encode("latin-1"))
  (d / "u.data").write_text("5\t2\t4\t881250949\n5\t1\t3\t881250000\n2\t1\t5\t874965758\n")
  catalog, events = readers.read_movielens(d)
  assert catalog.item_ids.tolist() == ["1", "2"]
  assert catalog.fields["title"].tolist() == ["Toy Story (1995)", "Am\u00e9lie (2001)"]
  assert catalog.fields["genres"].tolist() == ["Animation", "Action, Comedy"]
  assert events.user_ids.tolist() == ["2", "5"]
  assert np.all(events.behaviour == REC)
  assert user_events(events, catalog, "5") == [(REC, "1", 881250000, ""),
                                               (REC, "2", 881250949, "")]


# ----------------------------------------------------------------------------- Amazon


def test_amazon_beauty(beauty_dir):
  catalog, events = readers.load_raw(data_config("amazon", beauty_dir))
  # Verified with awk on Beauty.txt: 22,363 lines, 198,502 item tokens,
  # 12,101 distinct items; every item has a category path.
  assert catalog.num_items == 12101
  assert events.num_users == 22363
  rec = events.behaviour == REC
  assert int(rec.sum()) == 198502
  assert int((~rec).sum()) == 198502
  assert events.synthetic_time is True
  assert_sorted(events)
  # Line 1 of Beauty.txt: "1 1 2 3 4 5"; item 1 is OPI, Makeup|Nails|Nail Polish;
  # item 3 is Skin Care|Face|Creams & Moisturizers.
  ev1 = user_events(events, catalog, "1")
  assert [e[:3] for e in ev1 if e[0] == REC] == [(REC, str(i), i - 1) for i in range(1, 6)]
  search = [e for e in ev1 if e[0] == SEARCH]
  assert search[0] == (SEARCH, "1", 0, "makeup nails nail polish")
  assert search[2] == (SEARCH, "3", 2, "skin care face creams moisturizers")
  i1 = int(np.nonzero(catalog.item_ids == "1")[0][0])
  assert catalog.fields["brand"][i1] == "OPI"
  assert catalog.fields["categories"][i1] == "Makeup > Nails > Nail Polish"
  assert "L'Oreal Paris" in set(catalog.fields["brand"])     # HTML entity decoded
  assert "Unknown" not in set(catalog.fields["brand"])
  assert np.all(events.query[~rec] != "")
  # Every search event's query is its item's category query.
  cq = {c: category_query(c.split(" > ")) for c in set(catalog.fields["categories"])}
  cats = catalog.fields["categories"][events.item[~rec]]
  assert all(q == cq[c] for q, c in zip(events.query[~rec], cats))


def test_amazon_sequential_small(tmp_path):
  d = tmp_path / "beauty"
  d.mkdir()
  (d / "Toy.txt").write_text("u9 a b\nu2 b c a\n")
  (d / "SOURCE.txt").write_text("not a sequence file\n")
  (d / amazon.ATTRIBUTES_FILE).write_text(
      "item_id\tasin\tbrand_guess\tcategories\na\tA1\tAcme &amp; Co\tHair Care|Hair & Scalp\n"
      "b\tB1\tUnknown\t\nc\tC1\t\tThe|Of\n")
  catalog, events = readers.read_amazon(d)
  assert catalog.fields["brand"].tolist() == ["Acme & Co", "", ""]
  assert catalog.fields["categories"].tolist() == ["Hair Care > Hair & Scalp", "", "The > Of"]
  assert events.user_ids.tolist() == ["u9", "u2"]
  # b has no path, c's path is only stopwords: rec events only.
  assert user_events(events, catalog, "u9") == [
      (REC, "a", 0, ""), (SEARCH, "a", 0, "hair care scalp"), (REC, "b", 1, "")]
  assert user_events(events, catalog, "u2") == [
      (REC, "b", 0, ""), (REC, "c", 1, ""), (REC, "a", 2, ""),
      (SEARCH, "a", 2, "hair care scalp")]


def _write_raw_2014(d, gz=True):
  d.mkdir(exist_ok=True)
  meta = [
      {"asin": "X1", "title": "Red Lipstick", "brand": "Glam",
       "categories": [["Beauty", "Makeup", "Lips", "Lipstick"], ["Beauty", "Makeup", "Lips"]],
       "description": "A &amp; B"},
      {"asin": "X2", "title": "Shampoo", "categories": [["Beauty", "Hair Care", "Shampoos"]]},
      {"asin": "X3", "title": "Unreviewed", "categories": [["Beauty", "Tools"]]},
  ]
  reviews = [
      {"reviewerID": "R1", "asin": "X2", "unixReviewTime": 200, "overall": 5.0},
      {"reviewerID": "R1", "asin": "X1", "unixReviewTime": 100, "overall": 4.0},
      {"reviewerID": "R2", "asin": "X1", "unixReviewTime": 150, "overall": 3.0},
  ]
  meta_text = "".join(repr(m) + "\n" for m in meta)           # 2014: Python literals
  rev_text = "".join(json.dumps(r) + "\n" for r in reviews)
  if gz:
    (d / "meta_Beauty.json.gz").write_bytes(gzip.compress(meta_text.encode()))
    (d / "reviews_Beauty_5.json.gz").write_bytes(gzip.compress(rev_text.encode()))
  else:
    (d / "meta_Beauty.json").write_text(meta_text)
    (d / "reviews_Beauty_5.json").write_text(rev_text)
  return d


def test_amazon_raw_2014(tmp_path):
  d = _write_raw_2014(tmp_path / "raw")
  catalog, events = readers.load_raw(data_config("amazon", d))
  # Items are the reviewed asins in order of first review.
  assert catalog.item_ids.tolist() == ["X2", "X1"]
  assert catalog.fields["title"].tolist() == ["Shampoo", "Red Lipstick"]
  assert catalog.fields["brand"].tolist() == ["", "Glam"]
  assert catalog.fields["categories"].tolist() == ["Hair Care > Shampoos",
                                                   "Makeup > Lips > Lipstick"]
  assert catalog.fields["description"].tolist() == ["", "A & B"]
  assert events.synthetic_time is False
  r1 = user_events(events, catalog, "R1")
  assert [e[:3] for e in r1] == [(REC, "X1", 100), (SEARCH, "X1", 100), (REC, "X2", 200),
                                 (SEARCH, "X2", 200)]
  assert r1[1][3] in ("makeup lips lipstick", "makeup lips")
  assert r1[3][3] == "hair care shampoos"
  # Each interaction picks one of the item's paths with the seed.
  picks = set()
  for seed in range(12):
    _, ev = amazon.read_amazon_raw(d / "reviews_Beauty_5.json.gz", d / "meta_Beauty.json.gz",
                                   seed=seed)
    picks.update(ev.query[(ev.behaviour == SEARCH) & (ev.item == 1)].tolist())
  assert picks == {"makeup lips lipstick", "makeup lips"}
  _, ev_root = amazon.read_amazon_raw(d / "reviews_Beauty_5.json.gz",
                                      d / "meta_Beauty.json.gz", drop_root=False)
  assert "beauty hair care shampoos" in set(ev_root.query)


def test_amazon_raw_2018_json_and_missing_metadata(tmp_path):
  d = tmp_path / "raw18"
  d.mkdir()
  (d / "meta_All_Beauty.json").write_text(json.dumps(
      {"asin": "Y1", "title": "Soap", "brand": "Suds", "category": ["All Beauty", "Bath",
                                                                    "Soaps"],
       "description": ["Gentle", "soap."]}) + "\n")
  (d / "All_Beauty_5.json").write_text(
      json.dumps({"reviewerID": "Z", "asin": "Y1", "unixReviewTime": 5}) + "\n" +
      json.dumps({"reviewerID": "Z", "asin": "Y9", "unixReviewTime": 6}) + "\n")
  with pytest.raises(DataError) as e:
    readers.read_amazon(d)
  assert f"{d / 'All_Beauty_5.json'}:2: asin: unknown item id 'Y9'" in str(e.value)
  catalog, events = readers.read_amazon(d, allow_missing_metadata=True)
  assert catalog.item_ids.tolist() == ["Y1", "Y9"]
  assert catalog.fields["description"].tolist() == ["Gentle soap.", ""]
  assert user_events(events, catalog, "Z") == [
      (REC, "Y1", 5, ""), (SEARCH, "Y1", 5, "bath soaps"), (REC, "Y9", 6, "")]


# ----------------------------------------------------------------------------- generic


ITEMS = [{"item_id": "p1", "title": "Blue Mug", "tags": ["kitchen", "blue"]},
         {"item_id": "p2", "title": "Red Pan", "brand": "Iron", "tags": None},
         {"item_id": 3, "title": "Green Cup"}]
EVENTS = [
    {"user_id": "alice", "item_id": "p2", "timestamp": 20, "behaviour": "rec"},
    {"user_id": "bob", "item_id": 3, "timestamp": 5, "behaviour": "search",
     "query": "green  cup"},
    {"user_id": "alice", "item_id": "p1", "timestamp": 10, "behaviour": "search",
     "query": "Blue mug"},
    {"user_id": "alice", "item_id": "3", "timestamp": 20, "behaviour": "rec", "query": ""},
]
EXPECTED_ALICE = [(SEARCH, "p1", 10, "Blue mug"), (REC, "p2", 20, ""), (REC, "3", 20, "")]


def _check_generic(catalog, events):
  assert catalog.item_ids.tolist() == ["p1", "p2", "3"]
  assert catalog.fields["title"].tolist() == ["Blue Mug", "Red Pan", "Green Cup"]
  assert catalog.fields["tags"].tolist() == ["kitchen, blue", "", ""]
  assert catalog.fields["brand"].tolist() == ["", "Iron", ""]
  assert events.user_ids.tolist() == ["alice", "bob"]
  assert user_events(events, catalog, "alice") == EXPECTED_ALICE
  assert user_events(events, catalog, "bob") == [(SEARCH, "3", 5, "green cup")]


def test_generic_jsonl_gz(tmp_path):
  d = tmp_path / "g"
  d.mkdir()
  (d / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ITEMS))
  (d / "events.jsonl.gz").write_bytes(
      gzip.compress("".join(json.dumps(r) + "\n" for r in EVENTS).encode()))
  _check_generic(*readers.load_raw(data_config("generic", d)))


def test_generic_csv(tmp_path):
  d = tmp_path / "g"
  d.mkdir()
  (d / "items.csv").write_text('item_id,title,brand,tags\np1,Blue Mug,,"kitchen, blue"\n'
                               "p2,Red Pan,Iron,\n3,Green Cup,,\n")
  (d / "events.csv").write_text(
      "user_id,item_id,timestamp,behaviour,query\nalice,p2,20,rec,\nbob,3,5,search,green  cup\n"
      "alice,p1,10,search,Blue mug\nalice,3,20,rec,\n")
  c = data_config("generic", d)
  catalog, events = readers.load_raw(c)
  _check_generic(catalog, events)
  c.generic.items_file = "items.csv"
  c.generic.events_file = "events.csv"
  catalog2, events2 = readers.load_raw(c)
  assert np.array_equal(events2.item, events.item)


def test_simulated_through_load_raw():
  catalog, events = readers.load_raw(data_config("simulated"))
  assert catalog.num_items == 500 and events.num_users == 1000 and events.num_events == 20000
  assert set(np.unique(events.behaviour).tolist()) == {REC, SEARCH}
  assert_sorted(events)


def test_load_raw_checks_every_readers_output_against_the_schema():
  """check_catalog_events holds for a reader's output and catches what no reader may
  produce (a bug, not bad input): an item past the catalog, a rec event with a query."""
  catalog, events = readers.load_raw(data_config("simulated"))
  check_catalog_events(catalog, events)
  item = events.item.copy()
  item[0] = catalog.num_items
  with pytest.raises(AssertionError):
    check_catalog_events(catalog, dataclasses.replace(events, item=item))
  query = events.query.copy()
  query[np.flatnonzero(events.behaviour == REC)[0]] = "a query"
  with pytest.raises(AssertionError):
    check_catalog_events(catalog, dataclasses.replace(events, query=query))
