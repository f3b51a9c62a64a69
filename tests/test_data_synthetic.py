"""Tests for the synthetic QA generator (l2d_jax.data.synthetic) and its WordPiece tokenizer."""

import collections
import dataclasses
import json
import re

import pytest
import tokenizers
import transformers

from l2d_jax.data import synthetic, wordpiece
from l2d_jax.data.squad import read_split, read_squad

SMALL = synthetic.SyntheticConfig(seed=3, n_articles=12, paragraphs_per_article=4)


def _qas(data):
  """(title, context, qa) for every question, in file order."""
  return [(a["title"], p["context"], qa)
          for a in data["data"] for p in a["paragraphs"] for qa in p["qas"]]


def _values_in(context: str, relation: synthetic.Relation) -> list[str]:
  """The values of `relation` stated in `context`, in order."""
  pattern = re.escape(relation.fact).replace(r"\{person\}", r"\w+").replace(
      r"\{value\}", "(" + "|".join(map(re.escape, relation.values)) + ")")
  return re.findall(pattern, context)


def _relation_of(question: str) -> synthetic.Relation:
  """The relation a question asks for, from its wording."""
  for relation in synthetic.RELATIONS:
    prefix, suffix = relation.question.split("{subject}")
    if question.startswith(prefix) and question.endswith(suffix):
      return relation
  raise AssertionError(f"no relation asks {question!r}")


def test_same_seed_same_data_and_other_seed_other_data():
  assert synthetic.generate(SMALL) == synthetic.generate(SMALL)
  other = synthetic.generate(synthetic.SyntheticConfig(seed=4, n_articles=12))
  assert [c for _, c, _ in _qas(other)] != [c for _, c, _ in _qas(synthetic.generate(SMALL))]


def test_level_mix_is_exact_and_returned_by_id():
  config = synthetic.SyntheticConfig(seed=1, n_articles=16, paragraphs_per_article=4,
                                     questions_per_paragraph=2, level_mix=(0.5, 0.25, 0.25))
  data = synthetic.generate(config)
  levels = synthetic.difficulty_by_id(data)
  # 32 level-0 paragraphs of one question, 16 + 16 others of two.
  assert len(levels) == 32 + 16 * 2 * 2
  assert collections.Counter(levels.values()) == {0: 32, 1: 32, 2: 32}
  only_hops = synthetic.generate(dataclasses.replace(config, level_mix=(0, 0, 1)))
  assert set(synthetic.difficulty_by_id(only_hops).values()) == {2}


def test_every_answer_start_matches_its_text_once_in_the_context():
  data = synthetic.generate(dataclasses.replace(SMALL, questions_per_paragraph=4))
  for _, context, qa in _qas(data):
    (answer,) = qa["answers"]
    start = answer["answer_start"]
    assert context[start:start + len(answer["text"])] == answer["text"], qa["id"]
    assert context.count(answer["text"]) == 1, qa["id"]


def test_levels_have_the_promised_structure():
  data = synthetic.generate(dataclasses.replace(SMALL, n_articles=24, questions_per_paragraph=3))
  for _, context, qa in _qas(data):
    relation = _relation_of(qa["question"])
    values = _values_in(context, relation)
    answer = qa["answers"][0]["text"]
    assert answer in values, qa["id"]
    if qa["difficulty"] == 0:
      # The paragraph's only value word: spotting a value finds it.
      every_value = [v for r in synthetic.RELATIONS for v in _values_in(context, r)]
      assert every_value == [answer] and "teacher" not in qa["question"], qa["id"]
    elif qa["difficulty"] == 1:
      # Several values of the asked kind: the question's person picks one.
      person = qa["question"].split()[-2]
      assert len(values) >= 3 and f"{person} {relation.fact.split()[1]}" in context, qa["id"]
    else:
      # A hop: "the teacher of P"; P's own value is there to mislead.
      pupil = re.search(r"the teacher of (\w+)", qa["question"]).group(1)
      teacher = re.search(synthetic.TEACHER_FACT.format(pupil=pupil, teacher=r"(\w+)"),
                          context).group(1)
      own = relation.fact.format(person=pupil, value="")[:-1]
      assert len(values) == 4 and own in context, qa["id"]
      assert relation.fact.format(person=teacher, value=answer) in context, qa["id"]


def test_v2_unanswerable_questions_ask_about_someone_the_context_does_not_describe():
  config = synthetic.SyntheticConfig(seed=2, n_articles=40, version="2.0", unanswerable_rate=0.3)
  data = synthetic.generate(config)
  assert data["version"] == "v2.0"
  qas = _qas(data)
  impossible = [(c, qa) for _, c, qa in qas if qa["is_impossible"]]
  assert all(qa["answers"] for _, _, qa in qas if not qa["is_impossible"])
  assert 0.25 < len(impossible) / len(qas) < 0.35
  for context, qa in impossible:
    assert qa["answers"] == []
    relation = _relation_of(qa["question"])
    if qa["difficulty"] == 2:
      pupil = re.search(r"the teacher of (\w+)", qa["question"]).group(1)
      assert f"{pupil} learns from" not in context, qa["id"]
    else:
      person = qa["question"].split()[-2]
      assert f"{person} {relation.fact.split()[1]}" not in context, qa["id"]
  assert all("is_impossible" not in qa for _, _, qa in _qas(synthetic.generate(SMALL)))


def test_extra_annotators_repeat_the_answer_or_slip_to_the_person():
  config = dataclasses.replace(SMALL, n_articles=40, annotators=3, annotator_error_rate=0.2)
  slips = total = 0
  for _, context, qa in _qas(synthetic.generate(config)):
    gold, *others = qa["answers"]
    assert len(others) == 2, qa["id"]
    for other in others:
      start = other["answer_start"]
      assert context[start:start + len(other["text"])] == other["text"], qa["id"]
      total += 1
      if other != gold:
        slips += 1
        sentence = context[start:context.index(".", start) + 1]
        assert gold["text"] in sentence and sentence.startswith(other["text"]), qa["id"]
  assert total > 200 and 0.15 < slips / total < 0.25
  with pytest.raises(ValueError, match="annotators"):
    synthetic.SyntheticConfig(annotators=0)


def test_config_rejects_bad_values():
  with pytest.raises(ValueError, match="version"):
    synthetic.SyntheticConfig(version="3.0")
  with pytest.raises(ValueError, match="level_mix"):
    synthetic.SyntheticConfig(level_mix=(1.0, 0.0))
  with pytest.raises(ValueError, match="questions_per_paragraph"):
    synthetic.SyntheticConfig(questions_per_paragraph=5)
  with pytest.raises(ValueError, match="cast_size must be in 6..12, got 13"):
    synthetic.SyntheticConfig(cast_size=13)


def test_splits_are_article_disjoint_cover_everything_and_read_back(tmp_path):
  paths = synthetic.write_dataset(SMALL, tmp_path)
  assert paths.data.name == "synthetic-v1.1.json" and paths.splits.name == "splits.json"
  data = json.loads(paths.data.read_text())
  splits = json.loads(paths.splits.read_text())[paths.data.name]
  titles = [a["title"] for a in data["data"]]
  assert splits == {"expert_train": [t for i, t in enumerate(titles) if i % 4 in (0, 1)],
                    "rejector_train": titles[2::4], "test": titles[3::4]}
  assert sorted(sum(splits.values(), [])) == sorted(titles) and len(set(titles)) == 12

  squad = read_squad(paths.data, strict=True)
  assert squad.version == "1.1" and squad.skips.total == 0
  expected = _qas(data)
  assert [e.id for e in squad.examples] == [qa["id"] for _, _, qa in expected]
  first = squad.examples[0]
  assert (first.context, first.question, first.answers[0].text, first.answers[0].start) == (
      expected[0][1], expected[0][2]["question"], expected[0][2]["answers"][0]["text"],
      expected[0][2]["answers"][0]["answer_start"])
  ids_by_split = {name: {e.id for e in read_split(paths.data, paths.splits, name).examples}
                  for name in splits}
  assert sum(map(len, ids_by_split.values())) == len(expected)
  assert {e.title for e in read_split(paths.data, paths.splits, "test").examples} == set(
      splits["test"])


def test_v2_file_reads_back_with_unanswerable_flags(tmp_path):
  config = synthetic.SyntheticConfig(seed=5, n_articles=8, version="2.0", unanswerable_rate=0.5)
  paths = synthetic.write_dataset(config, tmp_path)
  squad = read_squad(paths.data, strict=True)
  flags = {qa["id"]: qa["is_impossible"] for _, _, qa in _qas(json.loads(paths.data.read_text()))}
  assert squad.version == "2.0"
  assert {e.id: e.is_impossible for e in squad.examples} == flags
  assert all(not e.answers for e in squad.examples if e.is_impossible)


@pytest.fixture(scope="module")
def corpus():
  return synthetic.generate(synthetic.SyntheticConfig(seed=0, n_articles=16))


@pytest.fixture(scope="module")
def tokenizer_dir(corpus, tmp_path_factory):
  return wordpiece.build_tokenizer(corpus, tmp_path_factory.mktemp("tok"))


def test_tokenizer_files_are_deterministic(corpus, tokenizer_dir, tmp_path):
  again = wordpiece.build_tokenizer(corpus, tmp_path)
  names = ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
  assert sorted(p.name for p in tokenizer_dir.iterdir()) == names
  for name in names:
    assert (again / name).read_bytes() == (tokenizer_dir / name).read_bytes(), name


def test_tokenizer_loads_both_ways_and_encodes_pairs_like_bert(corpus, tokenizer_dir):
  fast = tokenizers.Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
  auto = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
  vocab_lines = (tokenizer_dir / "vocab.txt").read_text().splitlines()
  assert vocab_lines[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  assert len(auto) == fast.get_vocab_size() == len(vocab_lines)
  assert (auto.pad_token_id, auto.cls_token_id, auto.sep_token_id) == (0, 2, 3)
  encoding = fast.encode("Where does Baran live?", "Baran lives in Ashholt.")
  assert encoding.tokens == ["[CLS]", "where", "does", "baran", "live", "?", "[SEP]",
                             "baran", "lives", "in", "ashholt", ".", "[SEP]"]
  assert encoding.type_ids == [0] * 7 + [1] * 6
  assert auto("Where does Baran live?", "Baran lives in Ashholt.")["input_ids"] == encoding.ids


def test_tokenizer_round_trip_and_offsets(corpus, tokenizer_dir):
  fast = tokenizers.Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
  for _, context, qa in _qas(corpus)[:50]:
    encoding = fast.encode(qa["question"], context)
    assert "[UNK]" not in encoding.tokens
    assert not any(t.startswith("##") for t in encoding.tokens)  # corpus words are whole
    assert fast.decode(encoding.ids) == (qa["question"] + " " + context).lower()
    for token, seq, (begin, end) in zip(encoding.tokens, encoding.sequence_ids, encoding.offsets):
      if seq == 1:
        assert context[begin:end].lower() == token


def test_unseen_words_fall_back_to_pieces(tokenizer_dir):
  fast = tokenizers.Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
  encoding = fast.encode("Zebra-crossing 1984")
  assert "[UNK]" not in encoding.tokens
  assert fast.decode(encoding.ids) == "zebra - crossing 1984"


def test_vocab_size_caps_words_by_frequency():
  texts = ["aa aa aa bb bb cc"]
  small = wordpiece.train_wordpiece(texts, vocab_size=len(_base_vocab()) + 1)
  assert "aa" in small.get_vocab() and "bb" not in small.get_vocab()
  assert small.encode("bb").tokens == ["[CLS]", "b", "##b", "[SEP]"]
  with pytest.raises(ValueError, match="vocab_size 10 is below"):
    wordpiece.train_wordpiece(texts, vocab_size=10)


def _base_vocab():
  return wordpiece.train_wordpiece([], vocab_size=10_000).get_vocab()
