"""Tests of l2d_jax/data/squad.py: reading, writing and splitting SQuAD files, and bad input."""

import json
import pathlib

import pytest

from l2d_jax.data import squad
from l2d_jax.data.example import Answer, DataError, Example


def _tiny() -> dict:
  """Two articles, three questions, in the official v1.1 layout."""
  return {"version": "1.1", "data": [
      {"title": "Cats", "paragraphs": [{"context": "The cat sat on the mat.", "qas": [
          {"answers": [{"answer_start": 15, "text": "the mat"},
                       {"answer_start": 19, "text": "mat"}],
           "question": "Where did the cat sit?", "id": "q1"},
          {"answers": [{"answer_start": 4, "text": "cat"}], "question": "Who sat?", "id": "q2"},
      ]}]},
      {"title": "Dogs", "paragraphs": [{"context": "A dog barked at night.", "qas": [
          {"answers": [{"answer_start": 2, "text": "dog"}], "question": "What barked?", "id": "q3"},
      ]}]},
  ]}


def _write(tmp_path: pathlib.Path, document: dict, name: str = "tiny.json") -> pathlib.Path:
  path = tmp_path / name
  path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
  return path


def _qas(document: dict, article: int = 0) -> list[dict]:
  return document["data"][article]["paragraphs"][0]["qas"]


def test_reads_examples_in_file_order(tmp_path):
  data = squad.read_squad(_write(tmp_path, _tiny()))
  assert data.version == "1.1"
  assert data.skips.total == 0
  assert data.examples[0] == Example(
      "q1", "Cats", "The cat sat on the mat.", "Where did the cat sit?",
      (Answer("the mat", 15), Answer("mat", 19)))
  assert [(e.id, e.title) for e in data.examples] == [("q1", "Cats"), ("q2", "Cats"),
                                                      ("q3", "Dogs")]


@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_write_then_read_gives_the_same_examples(tmp_path, version):
  context = "Zürich — the café opened in 1890."
  other = (Example("b1", "Other", "Nothing here.", "Why?", (), is_impossible=True)
           if version == "2.0" else
           Example("b1", "Other", "Nothing here.", "Why?", (Answer("here", 8),)))
  examples = [
      Example("a1", "Zürich", context, "When did it open?", (Answer("1890", 28),)),
      Example("a2", "Zürich", context, "What opened?",
              (Answer("the café", 9), Answer("café", 13)), no_evidence=True),
      other,
      Example("a3", "Zürich", context, "Which year?", (Answer("1890", 28),)),
  ]
  path = tmp_path / "out.json"
  squad.write_squad(path, examples, version)
  data = squad.read_squad(path)
  assert (data.version, data.skips.total) == (version, 0)
  assert data.examples == examples
  written = json.loads(path.read_text(encoding="utf-8"))
  assert written["version"] == ("v2.0" if version == "2.0" else "1.1")
  # Consecutive questions on one context share a paragraph; a title seen again starts an article.
  assert [a["title"] for a in written["data"]] == ["Zürich", "Other", "Zürich"]
  assert [len(p["qas"]) for p in written["data"][0]["paragraphs"]] == [2]


def test_write_refuses_unanswerable_questions_in_v1(tmp_path):
  example = Example("x", "T", "Some text.", "Why?", (), is_impossible=True)
  with pytest.raises(ValueError, match="unanswerable.*v1.1"):
    squad.write_squad(tmp_path / "x.json", [example], "1.1")


def test_malformed_json_names_line_and_column(tmp_path):
  path = tmp_path / "bad.json"
  path.write_text('{"version": "1.1",\n "data": [\n  {"title": "x",, }]}\n', encoding="utf-8")
  with pytest.raises(DataError, match="malformed JSON: .* at line 3, column 17") as err:
    squad.read_squad(path)
  assert err.value.file == str(path)


def _with_bad_byte(tmp_path: pathlib.Path, document: dict, old: str, new: bytes) -> tuple:
  raw = json.dumps(document, ensure_ascii=False).encode("utf-8")
  raw = raw.replace(old.encode("utf-8"), new, 1)
  path = tmp_path / "latin1.json"
  path.write_bytes(raw)
  return path, raw.index(b"\xff")


def test_bytes_that_are_not_utf8_in_a_question_name_offset_and_question(tmp_path):
  path, offset = _with_bad_byte(tmp_path, _tiny(), "Who sat?", b"Who sat\xff?")
  with pytest.raises(DataError, match=f"not UTF-8 at byte offset {offset} ") as err:
    squad.read_squad(path)
  assert (err.value.file, err.value.article, err.value.qid, err.value.field) == (
      str(path), "Cats", "q2", "data[0].paragraphs[0].qas[1].question")


def test_bytes_that_are_not_utf8_in_a_context_name_the_paragraphs_first_question(tmp_path):
  path, offset = _with_bad_byte(tmp_path, _tiny(), "A dog", b"A \xffdog")
  with pytest.raises(DataError, match=f"byte offset {offset} ") as err:
    squad.read_squad(path)
  assert (err.value.article, err.value.qid, err.value.field) == (
      "Dogs", "q3", "data[1].paragraphs[0].context")


def test_bytes_that_are_not_utf8_in_a_broken_file_still_give_the_offset(tmp_path):
  path = tmp_path / "broken.json"
  path.write_bytes(b'{"data": [\xff')
  with pytest.raises(DataError, match="not UTF-8 at byte offset 10 ") as err:
    squad.read_squad(path)
  assert (err.value.file, err.value.qid) == (str(path), None)


@pytest.mark.parametrize("remove, article, qid, field", [
    (lambda d: d.pop("data"), None, None, "data"),
    (lambda d: d["data"][1].pop("title"), "#1", None, "title"),
    (lambda d: d["data"][0].pop("paragraphs"), "Cats", None, "paragraphs"),
    (lambda d: d["data"][0]["paragraphs"][0].pop("context"), "Cats", None, "paragraphs[0].context"),
    (lambda d: d["data"][0]["paragraphs"][0].pop("qas"), "Cats", None, "paragraphs[0].qas"),
    (lambda d: _qas(d)[1].pop("id"), "Cats", None, "paragraphs[0].qas[1].id"),
    (lambda d: _qas(d)[1].pop("question"), "Cats", "q2", "question"),
    (lambda d: _qas(d)[1].pop("answers"), "Cats", "q2", "answers"),
    (lambda d: _qas(d)[0]["answers"][1].pop("text"), "Cats", "q1", "answers[1].text"),
    (lambda d: _qas(d, 1)[0]["answers"][0].pop("answer_start"), "Dogs", "q3",
     "answers[0].answer_start"),
])
def test_missing_fields_name_file_article_question_and_field(tmp_path, remove, article, qid, field):
  document = _tiny()
  remove(document)
  path = _write(tmp_path, document)
  with pytest.raises(DataError, match="missing field") as err:
    squad.read_squad(path)
  assert (err.value.file, err.value.article, err.value.qid, err.value.field) == (
      str(path), article, qid, field)


def test_a_field_of_the_wrong_type_is_named(tmp_path):
  document = _tiny()
  _qas(document)[0]["answers"][1]["answer_start"] = "19"
  with pytest.raises(DataError, match=r"expected int, got str .*question id 'q1', "
                     r"field 'answers\[1\].answer_start'"):
    squad.read_squad(_write(tmp_path, document))


def test_a_mismatched_answer_start_skips_that_answer(tmp_path):
  document = _tiny()
  _qas(document)[0]["answers"][1]["answer_start"] = 18
  data = squad.read_squad(_write(tmp_path, document))
  assert data.examples[0].answers == (Answer("the mat", 15),)
  assert dict(data.skips.counts) == {squad.SKIP_ANSWER_MISMATCH: 1}
  assert "1 x answer text empty or not found at answer_start (e.g. q1 answer 1)" in (
      data.skips.summary())


def test_a_question_left_without_answers_is_skipped_too(tmp_path):
  document = _tiny()
  for answer in _qas(document)[0]["answers"]:
    answer["answer_start"] += 1
  data = squad.read_squad(_write(tmp_path, document))
  assert [e.id for e in data.examples] == ["q2", "q3"]
  assert dict(data.skips.counts) == {squad.SKIP_ANSWER_MISMATCH: 2, squad.SKIP_NO_VALID_ANSWER: 1}


def test_strict_reading_makes_a_mismatched_answer_start_an_error(tmp_path):
  document = _tiny()
  _qas(document)[0]["answers"][1]["answer_start"] = 18
  path = _write(tmp_path, document)
  with pytest.raises(DataError, match="answer_start 18 does not match answer text 'mat' "
                     r"\(the context there reads ' ma'\)") as err:
    squad.read_squad(path, strict=True)
  assert (err.value.article, err.value.qid, err.value.field) == ("Cats", "q1", "answers[1]")


def test_empty_contexts_and_questions_are_counted_skips(tmp_path):
  document = _tiny()
  document["data"][0]["paragraphs"][0]["context"] = "  \n"
  _qas(document, 1)[0]["question"] = ""
  data = squad.read_squad(_write(tmp_path, document))
  assert data.examples == []
  assert dict(data.skips.counts) == {squad.SKIP_EMPTY_CONTEXT: 2, squad.SKIP_EMPTY_QUESTION: 1}
  assert "2 x empty context (e.g. q1 in 'Cats', q2 in 'Cats')" in data.skips.summary()


def test_a_malformed_field_is_an_error_even_where_the_question_would_be_skipped(tmp_path):
  document = _tiny()
  document["data"][0]["paragraphs"][0]["context"] = " "
  _qas(document)[1]["answers"][0]["answer_start"] = "4"
  with pytest.raises(DataError, match=r"expected int, got str .*question id 'q2', "
                     r"field 'answers\[0\].answer_start'"):
    squad.read_squad(_write(tmp_path, document))


def test_duplicate_question_ids_name_both_places(tmp_path):
  document = _tiny()
  _qas(document, 1)[0]["id"] = "q1"
  with pytest.raises(DataError, match=r"duplicate question id: first in article 'Cats' at "
                     r"paragraphs\[0\].qas\[0\], again in article 'Dogs' at "
                     r"paragraphs\[0\].qas\[0\]") as err:
    squad.read_squad(_write(tmp_path, document))
  assert err.value.qid == "q1"


def test_version_comes_from_the_field_or_from_is_impossible(tmp_path):
  document = _tiny()
  del document["version"]
  assert squad.read_squad(_write(tmp_path, document)).version == "1.1"
  _qas(document, 1)[0].update(is_impossible=True, answers=[])
  data = squad.read_squad(_write(tmp_path, document))
  assert data.version == "2.0"
  assert data.examples[2].is_impossible and data.examples[2].answers == ()
  document["version"] = "1.1"
  with pytest.raises(DataError, match="unanswerable questions in a SQuAD v1.1 file"):
    squad.read_squad(_write(tmp_path, document))
  document["version"] = "v3.0"
  with pytest.raises(DataError, match="unknown SQuAD version 'v3.0'"):
    squad.read_squad(_write(tmp_path, document))


def test_an_unanswerable_question_with_answers_is_an_error(tmp_path):
  document = _tiny()
  _qas(document)[1]["is_impossible"] = True
  with pytest.raises(DataError, match="an unanswerable question has answers") as err:
    squad.read_squad(_write(tmp_path, document))
  assert err.value.qid == "q2"


def test_read_split_reads_the_listed_articles(tmp_path):
  path = _write(tmp_path, _tiny())
  splits = _write(tmp_path, {"_doc": "about", "tiny.json": {"a": ["Dogs"], "b": ["Cats", "Dogs"]},
                             "other.json": {"a": ["Birds"]}}, "splits.json")
  assert [e.id for e in squad.read_split(path, splits, "a").examples] == ["q3"]
  assert [e.id for e in squad.read_split(path, splits, "b").examples] == ["q1", "q2", "q3"]
  with pytest.raises(DataError, match=r"unknown split 'c' \(known: \['a', 'b'\]\)"):
    squad.read_split(path, splits, "c")
  with pytest.raises(DataError, match=r"articles not in the file: \['Birds'\]"):
    squad.read_split(_write(tmp_path, _tiny(), "other.json"), splits, "a")
  with pytest.raises(DataError, match=r"no splits for data file 'third.json' \(the splits file "
                     r"has \['other.json', 'tiny.json'\]\)"):
    squad.read_split(_write(tmp_path, _tiny(), "third.json"), splits, "a")


def test_reads_the_real_dev_files(shared_squad):
  v1 = squad.read_squad(shared_squad / "dev-v1.1.json")
  assert (v1.version, len(v1.examples), v1.skips.total) == ("1.1", 10570, 0)
  assert len({e.title for e in v1.examples}) == 48
  first = v1.examples[0]
  assert (first.id, first.title, first.question) == (
      "56be4db0acb8001400a502ec", "Super_Bowl_50",
      "Which NFL team represented the AFC at Super Bowl 50?")
  assert first.answers[0] == Answer("Denver Broncos", 177)
  v2 = squad.read_squad(shared_squad / "dev-v2.0-half.json")
  assert (v2.version, len(v2.examples), v2.skips.total) == ("2.0", 6078, 0)
  assert sum(e.is_impossible for e in v2.examples) == 3168


def test_real_splits_partition_the_dev_set_by_article(shared_squad):
  path, splits = shared_squad / "dev-v1.1.json", shared_squad / "splits.json"
  titles = list(dict.fromkeys(e.title for e in squad.read_squad(path).examples))
  parts = {name: squad.read_split(path, splits, name).examples
           for name in ("expert_train", "rejector_train", "test")}
  assert sum(len(examples) for examples in parts.values()) == 10570
  # The documented rule: article i goes to test if i % 4 == 3.
  assert list(dict.fromkeys(e.title for e in parts["test"])) == titles[3::4]


def test_real_v1_expert_train_shares_no_context_with_v2_evaluation(shared_squad):
  """squad_v2_minilm starts its experts from squad_v1_minilm's: no paragraph of v2's
  rejector_train or test may be in the articles those experts were trained on."""
  def contexts(file, names):
    return {e.context for name in names
            for e in squad.read_split(shared_squad / file, shared_squad / "splits.json",
                                      name).examples}
  v1_train = contexts("dev-v1.1.json", ["expert_train"])
  v2_eval = contexts("dev-v2.0-half.json", ["rejector_train", "test"])
  assert len(v2_eval) > 200 and not v1_train & v2_eval
  # The same check finds the overlap where there is one: v2's expert_train shares paragraphs
  # with v1's rejector_train and test.
  assert contexts("dev-v2.0-half.json", ["expert_train"]) & contexts(
      "dev-v1.1.json", ["rejector_train", "test"])


def test_real_v2_file_round_trips_through_write_squad(shared_squad, tmp_path):
  data = squad.read_squad(shared_squad / "dev-v2.0-half.json")
  squad.write_squad(tmp_path / "copy.json", data.examples, "2.0")
  assert squad.read_squad(tmp_path / "copy.json").examples == data.examples

