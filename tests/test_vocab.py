"""The vocabulary: SentencePiece + appended tokens, Python and TF agree exactly."""

import io

import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf

from genret_jax.ids.types import IdTable, ItemIdentifiers, atomic_ids
from genret_jax.tasks import vocab as vocab_lib
from genret_jax.tasks.config import default_prompt_texts

CORPUS = ["Toy Story (1995); Adventure|Animation|Children", "red lipstick matte",
          "Café déjà vu; Comedy", "nail polish OPI", "<b>html</b> <x_1> 12345"] * 20
CORPUS += default_prompt_texts()
STRINGS = [
    "Here is the user's history <rec_item><item_3>; <src_query> red lipstick "
    "<src_item><item_9>. Please recommend the next item the user might want to click on.",
    "<src_query> café  déjà vu ",                  # double and trailing spaces survive
    "<item_0><item_11>",
    "Toy Story <b>red</b> <item_12345> <not a token>",   # not appended tokens: text
    "zebra ž",                                           # unseen characters: unk
    "",
]


@pytest.fixture(scope="module")
def sp_model():
  return vocab_lib.train_sentencepiece(CORPUS, 300)


@pytest.fixture(scope="module")
def vocab(sp_model):
  return vocab_lib.GenRetVocabulary(sp_model, atomic_ids(12).extra_tokens())


def test_python_and_tf_encode_decode_round_trip(vocab):
  for s in STRINGS:
    ids = vocab.encode(s)
    assert vocab.encode_tf(tf.constant(s)).numpy().tolist() == ids, s
    expected = s.replace("zebra ž", " ⁇ ebra  ⁇ ")   # unseen characters (z, ž) -> unk
    assert vocab.decode(ids) == expected
    if ids:
      assert vocab.decode_tf(tf.constant(ids)).numpy().decode() == expected
  batch = vocab.encode_tf(tf.constant(STRINGS))
  assert batch.to_list() == [vocab.encode(s) for s in STRINGS]
  decoded = vocab.decode_tf(batch.to_tensor()).numpy()          # rank 2, padded with 0
  assert [d.decode() for d in decoded] == [vocab.decode(vocab.encode(s)) for s in STRINGS]


def test_appended_token_ids_and_special_ids(vocab, sp_model):
  sp = spm.SentencePieceProcessor(model_proto=sp_model)
  n = sp.get_piece_size()
  assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
  assert (sp.id_to_piece(0), sp.id_to_piece(1), sp.id_to_piece(2)) == ("<pad>", "</s>", "<unk>")
  assert vocab.sp_size == n
  assert [vocab.token_id(f"<item_{k}>") for k in range(12)] == list(range(n, n + 12))
  assert [vocab.token_id(t) for t in vocab_lib.BEHAVIOUR_TOKENS] == [n + 12, n + 13, n + 14]
  assert vocab.vocab_size == n + 15
  assert vocab.encode("<rec_item><item_4>") == [n + 12, n + 4]
  assert vocab.decode([5, 1, n]) == vocab.decode([5])          # stops at EOS
  assert vocab.decode([n + 15]) == vocab.decode([2])           # out of range -> unk
  with pytest.raises(KeyError, match="<item_12>"):
    vocab.token_id("<item_12>")


def test_level_offsets_with_shared_levels(sp_model):
  codes = np.array([[0, 1], [1, 0], [2, 2]], np.int32)
  semantic = IdTable("semantic", codes, ("s0", "s1"), (3, 4))
  collaborative = IdTable("collaborative", codes[:, ::-1].copy(), ("s0", "c1"), (3, 5))
  ids = ItemIdentifiers("gensar", semantic, collaborative)
  v = vocab_lib.GenRetVocabulary(sp_model, ids.extra_tokens())
  n = v.sp_size
  # extra tokens: s0 (3), s1 (4), c1 (5), then the behaviour tokens.
  np.testing.assert_array_equal(v.level_offsets(semantic), [n, n + 3])
  np.testing.assert_array_equal(v.level_offsets(collaborative), [n, n + 7])
  np.testing.assert_array_equal(v.item_ids(collaborative)[2], [n + 2, n + 7 + 2])
  assert v.token_id("<rec_item>") == n + 12
  assert v.encode("<s0_2><c1_4>") == [n + 2, n + 11]


def test_t5_style_model_from_path(tmp_path):
  """A T5-layout model (dummy prefix, nmt_nfkc) loads from a path, used whitespace-exactly."""
  writer = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(CORPUS), model_writer=writer, vocab_size=200, pad_id=0, eos_id=1,
      unk_id=2, bos_id=-1, model_type="unigram", hard_vocab_limit=False, minloglevel=2)
  path = tmp_path / "t5.model"
  path.write_bytes(writer.getvalue())
  v = vocab_lib.GenRetVocabulary(str(path), atomic_ids(3).extra_tokens())
  s = "<src_query> red lipstick <src_item><item_2>"
  assert v.decode(v.encode(s)) == s
  assert v.encode_tf(tf.constant(s)).numpy().tolist() == v.encode(s)
  t5 = spm.SentencePieceProcessor(model_file=str(path))
  assert v.encode(" red lipstick") == t5.encode("red lipstick")   # same pieces as T5 for words


def test_model_with_other_special_ids_fails():
  writer = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_writer=writer,
                                 vocab_size=100, hard_vocab_limit=False, minloglevel=2)
  with pytest.raises(ValueError, match="pad 0, eos 1, unk 2"):
    vocab_lib.GenRetVocabulary(writer.getvalue())


def test_bad_appended_tokens_fail(sp_model):
  with pytest.raises(ValueError, match="look like <name>"):
    vocab_lib.GenRetVocabulary(sp_model, ["item_1"])
  with pytest.raises(ValueError, match="not unique"):
    vocab_lib.GenRetVocabulary(sp_model, ["<rec_item>"])
