"""Issue 16's bad-input corpus: malformed or odd inputs for every reader, config values and
workdir state.

Each malformed input gives one exact `file:line: field: reason` line (a DataError /
ConfigError, which `genret_jax.main` prints as `error: ...` with exit code 1; the CLI
itself is tested once, at the end); each valid-but-odd input gives exact counts. All
in-process: the readers, `config.resolve` and `pipeline.run` are called directly.
"""
# pylint: disable=protected-access

import dataclasses
import errno
import json
import os
import pathlib
import subprocess
import sys
from typing import Callable

import numpy as np
import pytest

from genret_jax import cache
from genret_jax import config as config_lib
from genret_jax.data import readers
from genret_jax.data.readers import amazon
from genret_jax.errors import ConfigError, DataError, GenRetError
from tests.conftest import REPO

LONG = "9" * 200_000            # a huge bad value: the error quotes 80 characters of it


# ----------------------------------------------------------------------------- builders


def _write(d: pathlib.Path, name: str, text: str | bytes) -> None:
  (d / name).write_bytes(text if isinstance(text, bytes) else text.encode())


MOVIES = "movieId,title,genres\n1,Heat (1995),Action\n2,Up (2009),Comedy\n"
RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,100\n2,2,3.0,200\n"
TAGS = "userId,movieId,tag,timestamp\n1,1,heist,150\n2,1,heist,160\n"


def ml(movies=MOVIES, ratings=RATINGS, tags=TAGS):
  """MovieLens (latest layout) folder; `ratings` etc. are whole files."""
  def build(d):
    for name, text in (("movies.csv", movies), ("ratings.csv", ratings), ("tags.csv", tags)):
      _write(d, name, text)
    return "movielens", {}
  return build


def ml100k(data="1\t1\t5\t100\n", genre="unknown|0\nAction|1\n"):
  def build(d):
    _write(d, "u.data", data)
    _write(d, "u.item", "1|Heat|01-Jan-1995||http://x|0|1\n")
    _write(d, "u.genre", genre)
    return "movielens", {}
  return build


TSV = "item_id\tcategories\tbrand\na\tBeauty|Skin Care\tAcme\nb\tBeauty|Hair\tUnknown\n"


def seq(lines="u1 a b\nu2 b\n", tsv=TSV):
  """Amazon sequential layout."""
  def build(d):
    _write(d, "Beauty.txt", lines)
    _write(d, amazon.ATTRIBUTES_FILE, tsv)
    return "amazon", {}
  return build


REVIEW = {"reviewerID": "r1", "asin": "A", "unixReviewTime": 100}
META = {"asin": "A", "title": "Cream", "categories": [["Beauty", "Skin Care", "Face"]]}


def raw(reviews=(REVIEW,), meta=(META,)):
  """Amazon raw McAuley layout: reviews as JSON lines, metadata as Python literals (2014)."""
  def build(d):
    _write(d, "Beauty.json", "".join(
        (r if isinstance(r, str) else json.dumps(r)) + "\n" for r in reviews))
    _write(d, "meta_Beauty.json", "".join(
        (m if isinstance(m, str) else repr(m)) + "\n" for m in meta))
    return "amazon", {}
  return build


ITEM = {"item_id": "p1", "title": "Blue Mug"}
EVENT = {"user_id": "alice", "item_id": "p1", "timestamp": 1700000000, "behaviour": "rec"}
SEARCH = dict(EVENT, behaviour="search", query="blue mug", timestamp=1700000060)


def gen(items=(ITEM,), events=(EVENT, SEARCH)):
  """Generic JSONL; rows are dicts (dumped) or raw strings (written as they are)."""
  def build(d):
    for name, rows in (("items.jsonl", items), ("events.jsonl", events)):
      _write(d, name, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                              for r in rows))
    return "generic", {}
  return build


def gen_csv(items="item_id,title\np1,Blue Mug\n",
            events="user_id,item_id,timestamp,behaviour,query\nalice,p1,1,rec,\n"):
  def build(d):
    _write(d, "items.csv", items)
    _write(d, "events.csv", events)
    return "generic", {}
  return build


def linked(build_inner: Callable, name: str, target: str):
  """`build_inner`'s folder, with `name` replaced by a symbolic link to `target`."""
  def build(d):
    out = build_inner(d)
    (d / name).unlink()
    os.symlink(target, d / name)
    return out
  return build


def folder_instead(build_inner: Callable, name: str):
  def build(d):
    out = build_inner(d)
    (d / name).unlink()
    (d / name).mkdir()
    return out
  return build


@dataclasses.dataclass(frozen=True)
class Counts:
  items: int
  users: int
  rec: int
  search: int


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  build: Callable
  expect: str | Counts   # the exact error line ({d} = the data folder) or the counts


OOR = "out of range for an integer timestamp (a signed 64-bit integer)"
ASCII = "(only the ASCII digits 0-9 are read as numbers)"

CASES = [
    # --- MovieLens
    Case("ml_timestamp_20_digits", ml(ratings=RATINGS + "1,2,4.0,12345678901234567890\n"),
         f"{{d}}/ratings.csv:4: timestamp: {OOR}: '12345678901234567890'"),
    Case("ml_timestamp_1e300", ml(ratings=RATINGS + "1,2,4.0,1e300\n"),
         f"{{d}}/ratings.csv:4: timestamp: {OOR}: '1e300'"),
    Case("ml_user_id_24_digits", ml(ratings=RATINGS + "123456789012345678901234,2,4.0,1\n"),
         "{d}/ratings.csv:4: userId: out of range for an integer id (a signed 64-bit integer): "
         "'123456789012345678901234'"),
    Case("ml_superscript_timestamp", ml(ratings=RATINGS + "1,2,4.0,\u00b2\n"),
         f"{{d}}/ratings.csv:4: timestamp: not an integer timestamp {ASCII}: '\u00b2'"),
    Case("ml_arabic_indic_user_id", ml(tags=TAGS + "\u0663,1,heist,170\n"),
         f"{{d}}/tags.csv:4: userId: not an integer id {ASCII}: '\u0663'"),
    Case("ml_underscore_timestamp", ml(ratings=RATINGS + "1,2,4.0,1_000\n"),
         "{d}/ratings.csv:4: timestamp: not an integer timestamp: '1_000'"),
    Case("ml_nan_rating", ml(ratings=RATINGS + "1,2,nan,300\n"),
         "{d}/ratings.csv:4: rating: not a number: 'nan'"),
    Case("ml_huge_bad_timestamp", ml(ratings=RATINGS + f"1,2,4.0,x{LONG}\n"),
         f"{{d}}/ratings.csv:4: timestamp: not an integer timestamp: 'x{'9' * 79}'... "
         "(200,001 characters)"),
    Case("ml_unterminated_quote", ml(movies=MOVIES + '3,"Open (2000),Drama\n'),
         "{d}/movies.csv:4: genres: expected 3 fields (','-separated), found 2"),
    Case("ml_column_named_twice",
         ml(ratings="userId,movieId,rating,timestamp,timestamp\n1,1,4.0,100,200\n"),
         "{d}/ratings.csv:1: timestamp: column named twice in the header (columns 4 and 5)"),
    Case("ml_movie_id_float", ml(movies=MOVIES + "3.5,Half (2001),Drama\n"),
         "{d}/movies.csv:4: movieId: not an integer movie id: '3.5'"),
    Case("ml_ratings_is_a_folder", folder_instead(ml(), "ratings.csv"),
         "{d}/ratings.csv: is a folder, not a file"),
    Case("ml_symlink_loop", linked(ml(), "tags.csv", "tags.csv"),
         "{d}/tags.csv: symbolic link loop (too many levels of symbolic links)"),
    Case("ml_broken_symlink", linked(ml(), "movies.csv", "/nonexistent/movies.csv"),
         "{d}/movies.csv: broken symbolic link (points to /nonexistent/movies.csv, which does "
         "not exist)"),
    Case("ml100k_timestamp_overflow", ml100k(data="1\t1\t5\t99999999999999999999\n"),
         f"{{d}}/u.data:1: timestamp: {OOR}: '99999999999999999999'"),
    Case("ml100k_bad_genre_id", ml100k(genre="unknown|0\nAction|7\n"),
         "{d}/u.genre:2: id: genre id 7 is not in 0..1 (u.genre numbers its genres 0, 1, ...)"),
    # valid but odd: BOM + CRLF, a repeated rating, a negative timestamp, admin tags only
    Case("ml_bom_crlf_repeats_negative_time",
         ml(ratings="\ufeffuserId,movieId,rating,timestamp\r\n1,1,4.0,-5\r\n1,1,4.0,-5\r\n",
            tags="userId,movieId,tag,timestamp\n1,1,to see,1\n2,1,To See,2\n"),
         Counts(items=2, users=1, rec=2, search=0)),
    # --- Amazon sequential
    Case("seq_unknown_item", seq(lines="u1 a\nu2 a zz\n"),
         "{d}/Beauty.txt:2: item_id: unknown item id 'zz' (position 2 in the sequence; not in "
         "{d}/derived_item_attributes.tsv)"),
    Case("seq_user_without_items", seq(lines="u1 a\nu2\n"),
         "{d}/Beauty.txt:2: item_id: a user line needs at least one item after the user id"),
    Case("seq_missing_categories_column", seq(tsv="item_id\tbrand\na\tX\n"),
         "{d}/derived_item_attributes.tsv:1: categories: missing column (header has: item_id, "
         "brand)"),
    Case("seq_duplicate_item", seq(tsv=TSV + "a\tBeauty|Nails\tX\n"),
         "{d}/derived_item_attributes.tsv:4: item_id: duplicate item id 'a' (first at line 2)"),
    Case("seq_sequence_file_is_a_folder", folder_instead(seq(), "Beauty.txt"),
         "{d}/Beauty.txt: is a folder, not a file"),
    # valid but odd: non-ASCII-digit and 24-digit user ids are string ids; an item
    # without categories gives rec events only
    Case("seq_odd_user_ids_and_no_category",
         seq(lines="\u00b2 a b\n123456789012345678901234 b\n7 a\n",
             tsv=TSV + "c\t\tX\n"),
         Counts(items=3, users=3, rec=4, search=4)),
    # --- Amazon raw
    Case("raw_categories_string", raw(meta=[dict(META, categories="Skin Care")]),
         "{d}/meta_Beauty.json:1: categories: expected a list of category paths (each a list "
         "of strings), got a string: 'Skin Care'"),
    Case("raw_categories_flat_list", raw(meta=[dict(META, categories=["Beauty", "Face"])]),
         "{d}/meta_Beauty.json:1: categories: expected a category path (a list of strings) in "
         "the list of paths, got a string: 'Beauty'"),
    Case("raw_category_2018_string",
         raw(meta=[{"asin": "A", "category": "Beauty"}]),
         "{d}/meta_Beauty.json:1: category: expected one category path (a list of strings), "
         "got a string: 'Beauty'"),
    Case("raw_asin_list", raw(reviews=[dict(REVIEW, asin=["p2", "x"])]),
         "{d}/Beauty.json:1: asin: expected a string or a number, got a list: ['p2', 'x']"),
    Case("raw_review_time_20_digits",
         raw(reviews=[dict(REVIEW, unixReviewTime=12345678901234567890)]),
         f"{{d}}/Beauty.json:1: unixReviewTime: {OOR}: 12345678901234567890"),
    Case("raw_review_time_bool", raw(reviews=[dict(REVIEW, unixReviewTime=True)]),
         "{d}/Beauty.json:1: unixReviewTime: expected an integer timestamp, got true/false: "
         "True"),
    Case("raw_reviewer_object", raw(reviews=[dict(REVIEW, reviewerID={"id": 1})]),
         "{d}/Beauty.json:1: reviewerID: expected a string or a number, got an object: "
         "{{'id': 1}}"),
    Case("raw_title_object", raw(meta=[dict(META, title={"en": "Cream"})]),
         "{d}/meta_Beauty.json:1: title: expected text, a number or a list of them, got an "
         "object: {{'en': 'Cream'}}"),
    Case("raw_no_metadata_for_asin", raw(reviews=[dict(REVIEW, asin="B")]),
         "{d}/Beauty.json:1: asin: unknown item id 'B' (not in {d}/meta_Beauty.json)"),
    # valid but odd: a 2018 list description, a numeric asin, a repeated review
    Case("raw_list_description_numeric_asin",
         raw(reviews=[REVIEW, REVIEW, dict(REVIEW, asin=7, reviewerID="r2")],
             meta=[dict(META, description=["a", "b"]), {"asin": "7", "category": []}]),
         Counts(items=2, users=2, rec=3, search=2)),
    # --- generic JSONL
    Case("gen_item_id_list", gen(items=[ITEM, {"item_id": ["p2", "x"]}]),
         "{d}/items.jsonl:2: item_id: expected a string or a number, got a list: ['p2', 'x']"),
    Case("gen_behaviour_list", gen(events=[dict(EVENT, behaviour=["rec"])]),
         "{d}/events.jsonl:1: behaviour: expected a string, got a list: ['rec']"),
    Case("gen_behaviour_number", gen(events=[dict(EVENT, behaviour=0)]),
         "{d}/events.jsonl:1: behaviour: expected a string, got int: 0"),
    Case("gen_query_object", gen(events=[dict(SEARCH, query={"q": "mug"})]),
         "{d}/events.jsonl:1: query: expected a string or a number, got an object: "
         "{{'q': 'mug'}}"),
    Case("gen_timestamp_20_digits", gen(events=[dict(EVENT, timestamp=12345678901234567890)]),
         f"{{d}}/events.jsonl:1: timestamp: {OOR}: '12345678901234567890'"),
    Case("gen_timestamp_1e300", gen(events=[dict(EVENT, timestamp=1e300)]),
         f"{{d}}/events.jsonl:1: timestamp: {OOR}: '1e+300'"),
    Case("gen_timestamp_bool", gen(events=[dict(EVENT, timestamp=True)]),
         "{d}/events.jsonl:1: timestamp: expected a string or a number, got true/false: True"),
    Case("gen_timestamp_superscript", gen(events=[dict(EVENT, timestamp="\u00b2")]),
         f"{{d}}/events.jsonl:1: timestamp: not an integer timestamp {ASCII}: '\u00b2'"),
    Case("gen_huge_bad_behaviour", gen(events=[dict(EVENT, behaviour="x" * 200_000)]),
         f"{{d}}/events.jsonl:1: behaviour: unknown behaviour '{'x' * 80}'... (200,000 "
         "characters) (expected rec or search)"),
    Case("gen_timestamp_5000_digits", gen(events=[dict(EVENT, timestamp="7" * 5000)]),
         f"{{d}}/events.jsonl:1: timestamp: {OOR}: '{'7' * 80}'... (5,000 characters)"),
    Case("gen_unquoted_5000_digit_number",
         gen(events=['{"user_id": "u", "timestamp": ' + "7" * 5000 + "}"]),
         "{d}/events.jsonl:1: not a JSON object (a number with more than 4300 digits)"),
    Case("gen_deeply_nested_json", gen(events=["[" * 100_000 + "]" * 100_000]),
         "{d}/events.jsonl:1: not a JSON object (nested too deeply)"),
    Case("gen_key_twice", gen(events=['{"user_id": "u", "item_id": "p1", "item_id": "p2"}']),
         "{d}/events.jsonl:1: item_id: key appears twice in the JSON object"),
    Case("gen_json_array_line", gen(events=['["alice", "p1"]']),
         "{d}/events.jsonl:1: expected a JSON object, got a list"),
    Case("gen_null_item_id", gen(items=[ITEM, {"item_id": None, "title": "x"}]),
         "{d}/items.jsonl:2: item_id: empty item id"),
    Case("gen_items_file_is_a_folder", folder_instead(gen(), "items.jsonl"),
         "{d}/items.jsonl: is a folder, not a file"),
    # valid but odd: numeric, 24-digit and '²' user ids; numeric item id; no item text at
    # all; numeric query; string timestamps
    Case("gen_odd_ids_no_text", gen(
        items=[{"item_id": 1}, {"item_id": "p1"}],
        events=[dict(EVENT, user_id=123456789012345678901234),
                dict(EVENT, user_id="9" * 5000),
                dict(EVENT, user_id="\u00b2", item_id=1, timestamp="5"),
                dict(SEARCH, user_id=7, query=2024)]),
        Counts(items=2, users=4, rec=3, search=1)),
    # --- generic CSV
    Case("csv_timestamp_superscript",
         gen_csv(events="user_id,item_id,timestamp,behaviour\nu,p1,\u00b9\u00b2,rec\n"),
         f"{{d}}/events.csv:2: timestamp: not an integer timestamp {ASCII}: '\u00b9\u00b2'"),
    Case("csv_unknown_item", gen_csv(events="user_id,item_id,timestamp,behaviour\nu,p9,1,rec\n"),
         "{d}/events.csv:2: item_id: unknown item id 'p9' (not in {d}/items.csv)"),
    Case("csv_bad_behaviour", gen_csv(events="user_id,item_id,timestamp,behaviour\nu,p1,1,buy\n"),
         "{d}/events.csv:2: behaviour: unknown behaviour 'buy' (expected rec or search)"),
    # valid but odd: a 200,000-character quoted title, a quoted multi-line title
    Case("csv_huge_and_multiline_fields",
         gen_csv(items=f'item_id,title\np1,"{"t" * 200_000}"\np2,"two\nlines"\n',
                 events="user_id,item_id,timestamp,behaviour,query\nu,p2,1,search,two\n"),
         Counts(items=2, users=1, rec=0, search=1)),
]


def _load(d: pathlib.Path, source: str, knobs: dict):
  c = config_lib.get_base_config().data
  c.source, c.path = source, str(d)
  for k, v in knobs.items():
    block, key = k.split(".")
    c[block][key] = v
  return readers.load_raw(c)


def test_corpus_is_large_enough():
  assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reader_case(tmp_path, case):
  d = tmp_path / "data"
  d.mkdir()
  source, knobs = case.build(d)
  if isinstance(case.expect, Counts):
    catalog, events = _load(d, source, knobs)
    got = Counts(catalog.num_items, events.num_users, int((events.behaviour == 0).sum()),
                 int((events.behaviour == 1).sum()))
    assert got == case.expect
    return
  with pytest.raises(DataError) as e:
    _load(d, source, knobs)
  assert str(e.value) == case.expect.format(d=d)


def test_no_silent_coercion_of_valid_odd_values(tmp_path):
  """What the odd-but-valid cases keep: ids as text, lists joined only in text fields."""
  d = tmp_path / "g"
  d.mkdir()
  CASES[[c.name for c in CASES].index("gen_odd_ids_no_text")].build(d)
  catalog, events = _load(d, "generic", {})
  assert list(catalog.item_ids) == ["1", "p1"]
  assert sorted(events.user_ids) == ["123456789012345678901234", "7", "9" * 5000, "\u00b2"]
  assert list(events.query[events.behaviour == 1]) == ["2024"]
  r = tmp_path / "r"
  r.mkdir()
  CASES[[c.name for c in CASES].index("raw_list_description_numeric_asin")].build(r)
  catalog, _ = _load(r, "amazon", {})
  assert list(catalog.fields["description"]) == ["a b", ""]
  assert list(catalog.fields["categories"]) == ["Skin Care > Face", ""]


# ----------------------------------------------------------------------------- filesystem


def test_unreadable_file_and_folder(tmp_path, monkeypatch):
  """Permission errors name the path and the reason (simulated: tests may run as root)."""
  d = tmp_path / "data"
  d.mkdir()
  ml()(d)
  real_read, real_listdir = pathlib.Path.read_bytes, os.listdir

  def read_bytes(self):
    if self.name == "ratings.csv":
      raise PermissionError(errno.EACCES, "Permission denied", str(self))
    return real_read(self)

  monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
  with pytest.raises(DataError) as e:
    _load(d, "movielens", {})
  assert str(e.value) == f"{d}/ratings.csv: permission denied (cannot read the file)"
  monkeypatch.setattr(os, "listdir", lambda p: (_ for _ in ()).throw(
      PermissionError(errno.EACCES, "Permission denied", str(p))))
  with pytest.raises(DataError) as e:
    _load(d, "movielens", {})
  assert str(e.value) == f"{d}: permission denied (cannot list the folder)"
  monkeypatch.setattr(os, "listdir", real_listdir)


def test_data_path_is_a_file(tmp_path):
  (tmp_path / "f").write_text("x")
  for source in ("movielens", "amazon", "generic"):
    with pytest.raises(DataError) as e:
      _load(tmp_path / "f", source, {})
    assert str(e.value) == f"{tmp_path}/f: not a folder (it is a file)"


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("key,value,expect", [
    ("model.size", "huge", "config.model.size: 'huge' is not one of tiny, small, base, large"),
    ("ids.scheme", "nope",
     "config.ids.scheme: must be one of atomic, rq_kmeans, rq_vae, gensar, got 'nope'"),
    ("train.num_steps", 0, "config.train.num_steps: must be >= 1, got 0"),
    ("tasks.prompt_style", "loud",
     "config.tasks.prompt_style: 'loud' is not one of ('full', 'short', 'none')"),
    ("model.dtype", "float8", "config.model.dtype: 'float8' is not one of ['bfloat16', "
     "'float32']"),
    ("train.optimizer", "sgd", "config.train.optimizer: 'sgd' is not one of ('adamw', "
     "'adafactor')"),
    ("vocab.sp_vocab_size", 10, "config.vocab.sp_vocab_size: must be >= 64, got 10"),
    ("data.source", "x" * 1000, "config.data.source: must be one of simulated, movielens, "
     "amazon, generic, got '" + "x" * 100),
    ("models", "a:joint:train.num_steps=0", "config.train.num_steps: must be >= 1, got 0"),
])
def test_bad_config_fails_in_resolve(key, value, expect):
  """Every block's validator runs in config.resolve, before any work, naming the key."""
  c = config_lib.get_base_config()
  node = c
  *head, last = key.split(".")
  for p in head:
    node = node[p]
  node[last] = value
  with pytest.raises(ConfigError) as e:
    config_lib.resolve(c)
  assert str(e.value).startswith(expect), str(e.value)
  assert len(str(e.value)) < 450          # a long value is cut


# ----------------------------------------------------------------------------- workdir state


def _tiny_generic(d: pathlib.Path, items: int = 120) -> None:
  d.mkdir()
  _write(d, "items.jsonl", "".join(json.dumps({"item_id": f"p{i}", "title": f"mug {i % 7}"})
                                   + "\n" for i in range(items)))
  rows = []
  for u in range(6):
    for t in range(5):
      rows.append(dict(EVENT, user_id=f"u{u}", item_id=f"p{(u * 5 + t) % items}", timestamp=t))
      rows.append(dict(SEARCH, user_id=f"u{u}", item_id=f"p{(u + t) % items}",
                       query=f"mug {t}", timestamp=t))
  _write(d, "events.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def _job_config(data: pathlib.Path):
  c = config_lib.get_base_config()
  c.scale = "smoke"
  c.data.source, c.data.path = "generic", str(data)
  return c


@pytest.fixture(scope="module")
def prepared_job(tmp_path_factory):
  """A prepared generic dataset: (config, workdir)."""
  from genret_jax import pipeline  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("job")
  _tiny_generic(root / "data")
  c = _job_config(root / "data")
  pipeline.run(c, str(root / "w"), "prepare")
  return c, root / "w"


def _copy(prepared_job, tmp_path) -> pathlib.Path:
  import shutil  # pylint: disable=g-import-not-at-top
  w = tmp_path / "w"
  shutil.copytree(prepared_job[1], w, symlinks=True)
  return w


@pytest.mark.parametrize("layout,expect", [
    ("workdir_is_file", "{w}: not a folder (it is a file; the workdir is written here: move it "
                        "away)"),
    ("workdir_below_file", "{w}/sub: not a folder (it, or a folder above it, is a file) "
                           "(cannot create the workdir)"),
    ("prepared_is_file", "{w}/prepared: not a folder (it is a file; the prepared dataset is "
                         "written here: move it away)"),
    ("prepared_is_broken_link", "{w}/prepared: missing (the prepared dataset must be a "
                                "folder)"),
])
def test_workdir_layout_errors(tmp_path, layout, expect):
  from genret_jax import pipeline  # pylint: disable=g-import-not-at-top
  _tiny_generic(tmp_path / "data")
  w = tmp_path / "w"
  if layout in ("workdir_is_file", "workdir_below_file"):
    w.write_text("x")
  else:
    w.mkdir()
    if layout == "prepared_is_file":
      (w / "prepared").write_text("x")
    else:
      os.symlink(tmp_path / "gone", w / "prepared")
  workdir = w / "sub" if layout == "workdir_below_file" else w
  with pytest.raises(DataError) as e:
    pipeline.run(_job_config(tmp_path / "data"), str(workdir), "prepare")
  assert str(e.value) == expect.format(w=w)


def test_cut_off_manifest_is_rebuilt(prepared_job, tmp_path, capsys):
  from genret_jax import pipeline  # pylint: disable=g-import-not-at-top
  from genret_jax.data import prepared  # pylint: disable=g-import-not-at-top
  w = _copy(prepared_job, tmp_path)
  text = (w / "prepared" / "manifest.json").read_text()
  (w / "prepared" / "manifest.json").write_text(text[:len(text) // 2])
  pipeline.run(prepared_job[0], str(w), "prepare")
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith(f"warning: {w}/prepared/manifest.json: unreadable: cut off or not "
                            "JSON (") and err[-1].endswith("; rebuilding the prepared dataset")
  prepared.verify(str(w / "prepared"))


def test_truncated_shard_is_rebuilt_not_reused(prepared_job, tmp_path, capsys):
  from genret_jax import pipeline  # pylint: disable=g-import-not-at-top
  from genret_jax.data import prepared  # pylint: disable=g-import-not-at-top
  w = _copy(prepared_job, tmp_path)
  shard = sorted((w / "prepared").glob("train.tfrecord-*"))[0]
  size = shard.stat().st_size
  with open(shard, "r+b") as f:
    f.truncate(size // 2)
  # A step that reuses prepared/ without preparing stops with one line.
  with pytest.raises(DataError) as e:
    pipeline.run(prepared_job[0], str(w), "ids")
  assert str(e.value) == (f"{shard}: {size // 2:,} bytes but manifest.json records {size:,} "
                          "(truncated or changed); rerun --mode=prepare (it rebuilds the "
                          "prepared dataset)")
  # Prepare rebuilds it.
  pipeline.run(prepared_job[0], str(w), "prepare")
  out = capsys.readouterr()
  assert "reusing prepared dataset" not in out.out and "prepared dataset written" in out.out
  assert f"warning: {shard}: {size // 2:,} bytes but manifest.json records" in out.err
  assert prepared.verify(str(w / "prepared"))["files"] == prepared.read_manifest(
      str(prepared_job[1] / "prepared"))["files"]


def test_changed_shard_same_size_is_caught(prepared_job, tmp_path):
  from genret_jax.data import prepared  # pylint: disable=g-import-not-at-top
  w = _copy(prepared_job, tmp_path)
  shard = sorted((w / "prepared").glob("items.tfrecord-*"))[0]
  data = bytearray(shard.read_bytes())
  data[len(data) // 2] ^= 0xFF
  shard.write_bytes(bytes(data))
  with pytest.raises(DataError) as e:
    prepared.load(str(w / "prepared"))
  assert str(e.value) == (f"{shard}: sha256 differs from manifest.json (changed or "
                          "corrupted); rerun --mode=prepare (it rebuilds the prepared dataset)")


def test_stale_temporary_folders_are_removed(prepared_job, tmp_path, capsys):
  from genret_jax import pipeline  # pylint: disable=g-import-not-at-top
  w = _copy(prepared_job, tmp_path)
  for name in (".prepared.tmp-0badcafe", ".prepared.old-12345678"):
    (w / name).mkdir()
    (w / name / "train.tfrecord-00000-of-00001").write_bytes(b"half")
  pipeline.run(prepared_job[0], str(w), "prepare")
  assert not any(p.name.startswith(".prepared.") for p in w.iterdir())
  assert ("warning: removed 2 temporary file(s) of an interrupted run: .prepared.tmp-0badcafe, "
          ".prepared.old-12345678") in capsys.readouterr().err


def test_damaged_identifiers_are_rebuilt(tmp_path, capsys):
  from genret_jax.ids import types  # pylint: disable=g-import-not-at-top
  from genret_jax.pipeline import common, steps  # pylint: disable=g-import-not-at-top
  folder = tmp_path / "ids" / "atomic"
  types.atomic_ids(50).save(str(folder))
  common.write_json(str(folder / steps.IDS_RECORD),
                    cache.record_files(str(folder), ["ids.json", "ids.npz"]))
  (folder / "stamp").write_text("s")
  assert steps._ids_reusable(str(folder), "s")
  npz = folder / "ids.npz"
  size = npz.stat().st_size
  with open(npz, "r+b") as f:
    f.truncate(size - 10)
  assert not steps._ids_reusable(str(folder), "s")
  assert capsys.readouterr().err.strip() == (
      f"warning: {npz}: {size - 10:,} bytes but files.json records {size:,} (truncated or "
      "changed); rebuilding the identifiers")
  # Without a record (an older workdir), a load failure is the check.
  (folder / steps.IDS_RECORD).unlink()
  assert not steps._ids_reusable(str(folder), "s")
  assert capsys.readouterr().err.startswith(f"warning: {folder}/ids: unreadable identifiers (")


def test_cut_off_json_caches_are_recomputed(tmp_path, capsys):
  from genret_jax.ids import build  # pylint: disable=g-import-not-at-top
  from genret_jax.pipeline import common  # pylint: disable=g-import-not-at-top
  path = tmp_path / "baselines.json"
  common.write_stamped(str(path), "s", {"Pop_R": {"rec": {"recall@10": 0.5}}})
  assert common.read_stamped(str(path), "s") == {"Pop_R": {"rec": {"recall@10": 0.5}}}
  path.write_text(path.read_text()[:20])
  assert common.read_stamped(str(path), "s") is None
  assert capsys.readouterr().err.startswith(f"warning: {path}: unreadable (")
  npy, meta = tmp_path / "semantic.npy", tmp_path / "semantic.json"
  np.save(npy, np.ones((4, 3), np.float32))
  meta.write_text(json.dumps({"key": {"k": 1}, "info": {}}))
  assert build._cached_embedding(str(npy), str(meta), {"k": 1}, 4)[0].shape == (4, 3)
  npy.write_bytes(npy.read_bytes()[:-8])
  assert build._cached_embedding(str(npy), str(meta), {"k": 1}, 4) is None
  assert capsys.readouterr().err.startswith(f"warning: {npy}: unreadable embedding cache (")


# ----------------------------------------------------------------------------- checkpoints


def _checkpointer(directory):
  from genret_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  from genret_jax.train import config as train_config  # pylint: disable=g-import-not-at-top
  cfg = train_config.default_config()
  cfg.async_checkpoints = False
  return checkpoints.Checkpointer(str(directory), cfg)


def _state(step):
  return {"w": np.arange(6, dtype=np.float32) * step, "step": np.asarray(step, np.int64)}


@pytest.fixture(scope="module")
def saved_checkpoints(tmp_path_factory):
  """Steps 1 and 2 saved and recorded."""
  root = tmp_path_factory.mktemp("ckpt") / "checkpoints"
  ckpt = _checkpointer(root)
  for step in (1, 2):
    ckpt.save(step, _state(step), {"batches_consumed": step})
  ckpt.close()
  return root


def _damaged_copy(saved, tmp_path, damage):
  import shutil  # pylint: disable=g-import-not-at-top
  root = tmp_path / "checkpoints"
  shutil.copytree(saved, root)
  shutil.copy(str(saved) + ".files.json", str(root) + ".files.json")
  return root, damage(root / "2")


def _truncate_largest(step_dir):
  f = max((p for p in step_dir.rglob("*") if p.is_file() and "state" in p.parts),
          key=lambda p: (p.stat().st_size, str(p)))
  size = f.stat().st_size
  with open(f, "r+b") as fh:
    fh.truncate(size // 2)
  return (f"{f.relative_to(step_dir)}: {size // 2:,} bytes but checkpoints.files.json records "
          f"{size:,} (truncated or changed)")


def _remove_input(step_dir):
  import shutil  # pylint: disable=g-import-not-at-top
  files = sorted(str(p.relative_to(step_dir)) for p in (step_dir / "input").rglob("*")
                 if p.is_file())
  shutil.rmtree(step_dir / "input")
  return f"{files[0]}: listed in checkpoints.files.json but missing"


@pytest.mark.parametrize("damage", [_truncate_largest, _remove_input],
                         ids=["truncated_file", "missing_item"])
def test_damaged_checkpoint_falls_back_to_the_previous(saved_checkpoints, tmp_path, capsys,
                                                       damage):
  root, problem = _damaged_copy(saved_checkpoints, tmp_path, damage)
  ckpt = _checkpointer(root)
  assert ckpt.latest_step() == 1 and ckpt.all_steps() == [1]
  state, position = ckpt.restore(1, _state(0))
  ckpt.close()
  np.testing.assert_array_equal(state["w"], _state(1)["w"])
  assert position == {"batches_consumed": 1}
  err = capsys.readouterr().err.strip()
  dest = sorted(pathlib.Path(str(root) + ".damaged").iterdir())[0]
  assert err == (f"warning: {root}/2/{problem}: checkpoint step 2 is damaged, moved to {dest}; "
                 "using the previous good checkpoint (step 1)")


def test_unrecorded_damaged_checkpoint_stops_with_one_line(saved_checkpoints, tmp_path):
  root, _ = _damaged_copy(saved_checkpoints, tmp_path, _truncate_largest)
  os.remove(str(root) + ".files.json")        # e.g. written before records existed
  ckpt = _checkpointer(root)
  assert ckpt.latest_step() == 2
  with pytest.raises(GenRetError) as e:
    ckpt.restore(2, _state(0))
  msg = str(e.value)
  assert "\n" not in msg and msg.startswith(f"{root}/2: cannot restore the checkpoint (")
  assert msg.endswith("); delete that folder to use the previous checkpoint")


# ----------------------------------------------------------------------------- the CLI


def _cli(workdir, *args):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  for key in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY", "GLOG_minloglevel"):
    env.pop(key, None)                          # main's own quiet default is under test
  return subprocess.run([sys.executable, "-m", "genret_jax.main", f"--workdir={workdir}",
                         "--mode=prepare", *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)


@pytest.mark.parametrize("args,code,last,one_line", [
    (("--config=configs/joint.py", "--config.data.source=generic", "--config.data.path={d}"),
     1, "error: {d}/events.jsonl:1: behaviour: expected a string, got a list: ['rec']", True),
    (("--config=configs/joint.py", "--config.data.source=generic", "--config.data.path={d}",
      "--verbosity=0"),
     1, "error: {d}/events.jsonl:1: behaviour: expected a string, got a list: ['rec']", False),
    (("--config=configs/nope.py", "--config.data.source=generic"),
     2, "error: cannot load --config=configs/nope.py: no such file", True),
], ids=["quiet", "verbose", "missing_config_with_override"])
def test_cli_one_line_and_exit_code(tmp_path, args, code, last, one_line):
  """The error line is the last line on stderr; start-up logging only with --verbosity."""
  d = tmp_path / "data"
  d.mkdir()
  gen(events=[dict(EVENT, behaviour=["rec"])])(d)
  r = _cli(tmp_path / "w", *(a.format(d=d) for a in args))
  lines = r.stderr.strip().splitlines()
  assert r.returncode == code, r.stderr[-2000:]
  assert "Traceback" not in r.stderr
  assert lines[-1] == last.format(d=d)
  assert (len(lines) == 1) == one_line, r.stderr[-2000:]
