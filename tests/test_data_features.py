"""Tests for l2d_jax.data.features: exact windows and labels, parity with run_qa.py-style code."""

import copy
import json
import pathlib

import numpy as np
import pytest
import tokenizers
from tokenizers import models, normalizers, pre_tokenizers, processors

from l2d_jax.data import features as F
from l2d_jax.data import tokenizer as tokenizer_lib
from l2d_jax.data.example import Answer, DataError, Example

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = ("the cat sat on mat where did what is a dog ran to park red blue green one two three "
          "four five six seven eight nine ten eleven twelve thirteen fourteen fifteen").split()
_PIECES = ["##s", "##at"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> "tokenizers.Tokenizer":
  """A word-level-ish uncased WordPiece tokenizer over `_WORDS`, loaded through load_tokenizer."""
  vocab = {token: i for i, token in enumerate(_SPECIAL + _WORDS + _PIECES + ["?", "."])}
  backend = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
  backend.normalizer = normalizers.BertNormalizer(lowercase=True)
  backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  backend.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
      special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
  path = tmp_path_factory.mktemp("tiny") / "tokenizer.json"
  backend.save(str(path))
  return tokenizer_lib.load_tokenizer(path)


@pytest.fixture(scope="module")
def minilm():
  return tokenizer_lib.load_tokenizer("all-MiniLM-L6-v2")


def _ids(tokenizer, text: str) -> list[int]:
  return tokenizer(text, add_special_tokens=False)["input_ids"]


def _example(qid, context, question, answer=None, **flags) -> Example:
  answers = () if answer is None else (Answer(answer, context.index(answer)),)
  return Example(id=qid, title="t", context=context, question=question, answers=answers, **flags)


def test_answer_inside_one_window_gives_exact_ids_offsets_and_labels(tiny):
  context = "The cat sat on the mat."
  example = _example("q1", context, "  Where did the cat sit?", "the mat")
  feats = F.make_features([example], tiny, F.FeatureParams(16, 2, 8))
  cls, sep, pad = (tiny.convert_tokens_to_ids(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
  question = _ids(tiny, "where did the cat sit?")  # left-stripped
  expected_ids = [cls, *question, sep, *_ids(tiny, context), sep]
  assert feats.num_features == 1 and feats.example_ids == ["q1"]
  np.testing.assert_array_equal(feats.input_ids_FxL[0],
                                expected_ids + [pad] * (16 - len(expected_ids)))
  context_start = len(question) + 2
  np.testing.assert_array_equal(feats.token_type_ids_FxL[0, :len(expected_ids)],
                                [0] * context_start + [1] * (len(expected_ids) - context_start))
  assert feats.attention_mask_FxL[0].sum() == len(expected_ids)
  # Context tokens: the cat sat on the mat .
  expected_offsets = [[0, 3], [4, 7], [8, 11], [12, 14], [15, 18], [19, 22], [22, 23]]
  np.testing.assert_array_equal(feats.offsets_FxLx2[0, context_start:context_start + 7],
                                expected_offsets)
  assert (feats.offsets_FxLx2[0, :context_start] == -1).all()
  assert (feats.offsets_FxLx2[0, context_start + 7:] == -1).all()
  assert (feats.start_positions_F[0], feats.end_positions_F[0]) == (context_start + 4,
                                                                    context_start + 5)
  assert F.decode_span(feats, 0, context_start + 4, context_start + 5, context) == "the mat"
  assert feats.input_ids_FxL.dtype == np.int32 and feats.offsets_FxLx2.dtype == np.int32


def _counting_context(n: int) -> str:
  return " ".join(_WORDS[_WORDS.index("one"):][:n])


def test_windows_follow_doc_stride_and_label_answers_only_where_whole(tiny):
  context = _counting_context(15)  # one .. fifteen: one token each
  words = context.split()
  params = F.FeatureParams(max_seq_len=12, doc_stride=3, max_query_len=4)
  examples = [
      _example("inside-two", context, "what is", "five six"),    # in windows 0 and 1
      _example("across", context, "what is", "six seven eight"),  # crosses window 0's end
      _example("last", context, "what is", "fifteen"),
  ]
  feats = F.make_features(examples, tiny, params)
  # 2 question tokens + 3 specials leave 7 context tokens; windows advance by 7 - 3 = 4.
  expected_starts = [0, 4, 8]
  np.testing.assert_array_equal(feats.example_index_F, [0] * 3 + [1] * 3 + [2] * 3)
  for f in range(feats.num_features):
    start = expected_starts[f % 3]
    window = words[start:start + 7]
    np.testing.assert_array_equal(feats.input_ids_FxL[f, 4:4 + len(window)],
                                  [tiny.convert_tokens_to_ids(w) for w in window])
  labels = list(zip(feats.start_positions_F.tolist(), feats.end_positions_F.tolist()))
  # "five six" = words 4-5: window 0 tokens 4+4, 4+5; window 1 tokens 4+0, 4+1.
  assert labels[0:3] == [(8, 9), (4, 5), (0, 0)]
  # "six seven eight" = words 5-7: not whole in window 0 (0-6), whole in window 1 (4-10).
  assert labels[3:6] == [(0, 0), (5, 7), (0, 0)]
  assert labels[6:9] == [(0, 0), (0, 0), (4 + 14 - 8, 4 + 14 - 8)]
  for f, (s, e) in enumerate(labels):
    if s:
      gold = examples[feats.example_index_F[f]].answers[0].text
      assert F.decode_span(feats, f, s, e, context) == gold


def test_unanswerable_and_no_evidence_are_labelled_cls(tiny):
  context = "the dog ran to the park."
  examples = [_example("impossible", context, "what is red?", is_impossible=True),
              _example("no-evidence", context, "what ran?", "the dog", no_evidence=True),
              _example("answerable", context, "what ran?", "the dog")]
  feats = F.make_features(examples, tiny, F.FeatureParams(24, 4, 8))
  assert feats.start_positions_F.tolist()[:2] == [0, 0]
  assert feats.end_positions_F.tolist()[:2] == [0, 0]
  assert feats.start_positions_F[2] > 0


def test_long_questions_are_cut_to_max_query_len_tokens(tiny):
  context = "the cat sat on the mat."
  # "cats" is two pieces (cat ##s); the cut falls between them.
  question = "what is the red blue green cats dog"
  example = _example("long", context, question, "the mat")
  feats = F.make_features([example], tiny, F.FeatureParams(32, 4, max_query_len=7))
  kept = _ids(tiny, question)[:7]
  assert kept[-1] == tiny.convert_tokens_to_ids("cat")
  sep = tiny.convert_tokens_to_ids("[SEP]")
  np.testing.assert_array_equal(feats.input_ids_FxL[0, :9], [tiny.convert_tokens_to_ids("[CLS]"),
                                                             *kept, sep])
  np.testing.assert_array_equal(feats.input_ids_FxL[0, 9:15], _ids(tiny, "the cat sat on the mat"))
  assert F.decode_span(feats, 0, feats.start_positions_F[0], feats.end_positions_F[0],
                       context) == "the mat"


def test_select_equals_features_of_the_selected_examples(tiny):
  context = _counting_context(15)
  examples = [_example(f"q{i}", context, "what is", word)
              for i, word in enumerate(["two", "nine", "fifteen", "one"])]
  params = F.FeatureParams(max_seq_len=12, doc_stride=3, max_query_len=4)
  full = F.make_features(examples, tiny, params, batch_size=3)  # batches must not matter
  np.testing.assert_array_equal(full.example_index_F, np.repeat(np.arange(4), 3))
  picked = full.select([2, 0])
  direct = F.make_features([examples[2], examples[0]], tiny, params)
  assert picked.example_ids == ["q2", "q0"] == direct.example_ids
  for name, array in direct.arrays().items():
    np.testing.assert_array_equal(getattr(picked, name), array, err_msg=name)
  with pytest.raises(ValueError, match="distinct"):
    full.select([1, 1])


def test_decode_span_is_empty_for_cls_and_reversed_spans(tiny):
  context = "the cat sat."
  feats = F.make_features([_example("q", context, "what", "cat")], tiny, F.FeatureParams(16, 2, 4))
  assert F.decode_span(feats, 0, 0, 0, context) == ""
  s = feats.start_positions_F[0]
  assert F.decode_span(feats, 0, s, s - 1, context) == ""
  assert F.decode_span(feats, 0, s, s + 1, context) == "cat sat"


def test_context_without_tokens_is_a_data_error_naming_the_question(tiny):
  with pytest.raises(DataError,
                     match=r"context has no tokens.*question id 'blank'.*field 'context'"):
    F.make_features([_example("ok", "the cat", "what"), _example("blank", "   ", "what")],
                    tiny, F.FeatureParams(16, 2, 4))


def test_left_padding_tokenizer_is_refused(minilm):
  left = copy.deepcopy(minilm)
  left.padding_side = "left"
  with pytest.raises(ValueError, match="pads and truncates on the right, not 'left'/'right'"):
    F.make_features([_example("q", "the cat", "what")], left, F.FeatureParams(16, 2, 4))


def test_params_must_let_windows_advance():
  with pytest.raises(ValueError, match="windows would not advance"):
    F.FeatureParams(max_seq_len=64, doc_stride=32, max_query_len=32)


def test_no_examples_give_empty_arrays(tiny):
  feats = F.make_features([], tiny, F.FeatureParams(16, 2, 4))
  assert feats.num_features == 0 and feats.offsets_FxLx2.shape == (0, 16, 2)


def _run_qa_reference(examples, tokenizer, max_len, stride):
  """run_qa.py's prepare_train_features (pad on the right), kept to the context's tokens."""
  enc = tokenizer([e.question.lstrip() for e in examples], [e.context for e in examples],
                  truncation="only_second", max_length=max_len, stride=stride,
                  return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
  starts, ends, offsets = [], [], []
  for i, sample in enumerate(enc["overflow_to_sample_mapping"]):
    seq = enc.sequence_ids(i)
    offsets.append([o if s == 1 else (-1, -1) for o, s in zip(enc["offset_mapping"][i], seq)])
    answers = examples[sample].answers
    if not answers:
      starts.append(0)
      ends.append(0)
      continue
    start_char, end_char = answers[0].start, answers[0].end
    first = seq.index(1)
    last = len(seq) - 1 - seq[::-1].index(1)
    spans = enc["offset_mapping"][i]
    if not (spans[first][0] <= start_char and spans[last][1] >= end_char):
      starts.append(0)
      ends.append(0)
      continue
    tok = first
    while tok <= last and spans[tok][0] <= start_char:
      tok += 1
    starts.append(tok - 1)
    tok = last
    while tok >= first and spans[tok][1] >= end_char:
      tok -= 1
    ends.append(tok + 1)
  return enc, np.array(offsets), starts, ends


def _squad_sample(path: pathlib.Path, n: int) -> list[Example]:
  data = json.loads((path / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
  out = []
  for article in data[::6]:
    for paragraph in article["paragraphs"][:3]:
      for qa in paragraph["qas"][:2]:
        answer = qa["answers"][0]
        out.append(Example(qa["id"], article["title"], paragraph["context"], qa["question"],
                           (Answer(answer["text"], answer["answer_start"]),)))
  return out[:n]


def test_matches_run_qa_preprocessing_on_squad_with_minilm(minilm, shared_squad):
  examples = _squad_sample(shared_squad, 80)
  # Windows by the dozen: a short max_seq_len makes every context overflow.
  for max_len, stride in ((128, 32), (384, 128)):
    feats = F.make_features(examples, minilm, F.FeatureParams(max_len, stride, 64), batch_size=32)
    enc, offsets, starts, ends = _run_qa_reference(examples, minilm, max_len, stride)
    np.testing.assert_array_equal(feats.input_ids_FxL, enc["input_ids"])
    np.testing.assert_array_equal(feats.token_type_ids_FxL, enc["token_type_ids"])
    np.testing.assert_array_equal(feats.attention_mask_FxL, enc["attention_mask"])
    np.testing.assert_array_equal(feats.example_index_F, enc["overflow_to_sample_mapping"])
    np.testing.assert_array_equal(feats.offsets_FxLx2, offsets)
    assert all(a.text == a.text.strip() for e in examples for a in e.answers)
    np.testing.assert_array_equal(feats.start_positions_F, starts)
    np.testing.assert_array_equal(feats.end_positions_F, ends)
  assert feats.num_features > len(examples) / 2
