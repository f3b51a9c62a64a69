"""TriviaQA rc reader: alias location, whole documents and cuts, the official layout, bad input."""

import json
import logging
import pathlib

import numpy as np
import pytest

from l2d_jax.data import features, triviaqa, wordpiece
from l2d_jax.data.example import Answer, DataError, Example, SkipReport
from l2d_jax.data.tokenizer import load_tokenizer

PARIS_PAGE = "  Paris is the capital of France. PARIS hosts the Louvre; Parisians love it.\n"
LIGHT_PAGE = "The City of Light, paris, is also called Lutetia."
NILE_PAGE = "The Nile flows north through Egypt into the Mediterranean Sea."

PARIS_QUESTION = {
    "Answer": {"Aliases": ["Paris", "City of Light", " paris "], "MatchedWikiEntryName": "Paris",
               "NormalizedAliases": ["paris", "city of light"], "NormalizedMatchedWikiEntryName":
               "paris", "NormalizedValue": "paris", "Type": "WikipediaEntity", "Value": "Paris"},
    "EntityPages": [{"DocSource": "TagMe", "Filename": "Paris.txt", "Title": "Paris"}],
    "Question": " What is the capital of France? ",
    "QuestionId": "tc_1",
    "QuestionSource": "http://www.quiz.example/1",
}
NILE_QUESTION = {
    "Answer": {"Aliases": ["Amazon", "Amazon River"], "MatchedWikiEntryName": "Amazon River",
               "NormalizedAliases": ["amazon", "amazon river"], "NormalizedMatchedWikiEntryName":
               "amazon river", "NormalizedValue": "amazon river", "Type": "WikipediaEntity",
               "Value": "Amazon River"},
    "EntityPages": [{"DocSource": "TagMe", "Filename": "Nile.txt", "Title": "Nile"}],
    "Question": "Which river carries the most water?",
    "QuestionId": "tc_2",
    "QuestionSource": "http://www.quiz.example/2",
}
WEB_RESULT = {"Description": "A page about Paris", "DisplayUrl": "light.example", "Filename":
              "7/7_1.txt", "Rank": 0, "Title": "City of Light", "Url": "http://light.example"}

# What the fixture's dev split reads as (max_evidence_chars large enough for every page).
EXPECTED_DEV = [
    Example("tc_1--Paris.txt", "Paris", PARIS_PAGE.strip(), "What is the capital of France?",
            (Answer("Paris", 0), Answer("PARIS", 32))),
    Example("tc_2--Nile.txt", "Nile", NILE_PAGE, "Which river carries the most water?", (),
            no_evidence=True),
    Example("tc_1--7/7_1.txt", "City of Light", LIGHT_PAGE, "What is the capital of France?",
            (Answer("City of Light", 4), Answer("paris", 19))),
]


def write_qa_file(path: pathlib.Path, records: list, domain: str, split: str) -> None:
  """A qa file as the official release writes it (TFDS parses that indentation line by line)."""
  document = {"Data": records, "Domain": domain, "Split": split, "VerifiedEval": False,
              "Version": 1.0}
  path.write_text(json.dumps(document, indent=4, sort_keys=True), encoding="utf-8")


def write_rc_tree(root: pathlib.Path) -> pathlib.Path:
  """A tiny extracted triviaqa-rc tree: qa files for every split, Wikipedia and web evidence.

  The Wikipedia and web files share question tc_1 and its entity page, as the
  official files do.
  """
  (root / "qa").mkdir(parents=True)
  (root / "evidence" / "wikipedia").mkdir(parents=True)
  (root / "evidence" / "web" / "7").mkdir(parents=True)
  (root / "evidence" / "wikipedia" / "Paris.txt").write_text(PARIS_PAGE, encoding="utf-8")
  (root / "evidence" / "wikipedia" / "Nile.txt").write_text(NILE_PAGE, encoding="utf-8")
  (root / "evidence" / "web" / "7" / "7_1.txt").write_text(LIGHT_PAGE, encoding="utf-8")
  web_question = dict(PARIS_QUESTION, SearchResults=[WEB_RESULT])
  for split in ("train", "dev"):
    write_qa_file(root / "qa" / f"wikipedia-{split}.json", [PARIS_QUESTION, NILE_QUESTION],
                  "wikipedia", split)
    write_qa_file(root / "qa" / f"web-{split}.json", [web_question], "web", split)
  for domain, record in (("wikipedia", PARIS_QUESTION), ("web", web_question)):
    unanswered = {k: v for k, v in record.items() if k != "Answer"}
    write_qa_file(root / "qa" / f"{domain}-test-without-answers.json", [unanswered], domain,
                  "test")
  return root


def test_answer_aliases_strips_and_drops_case_duplicates_and_empties():
  assert triviaqa.answer_aliases(" Paris ", ["paris", "City of Light", "", "  ", "PARIS"]) == (
      "Paris", "City of Light")


def test_locate_aliases_ignores_case_and_needs_whole_words():
  context = "Paris, not Parisian nor paris2; in PARIS (paris)."
  assert triviaqa.locate_aliases(context, ["Paris"]) == (
      Answer("Paris", 0), Answer("PARIS", 35), Answer("paris", 42))


def test_locate_aliases_handles_punctuated_aliases_and_prefers_the_longest():
  context = "The U.S. team left New York City for New York; C++ won."
  answers = triviaqa.locate_aliases(context, ["New York", "U.S.", "New York City", "C++"])
  assert answers == (Answer("U.S.", 4), Answer("New York City", 19), Answer("New York", 37),
                     Answer("C++", 47))
  assert all(context[a.start:a.end] == a.text for a in answers)
  assert triviaqa.locate_aliases(context, []) == ()


def test_truncate_evidence_ends_on_a_word_end():
  text = "alpha beta gamma"
  assert triviaqa.truncate_evidence(text, 100) == text
  assert triviaqa.truncate_evidence(text, 10) == "alpha beta"  # the cut falls on a space
  assert triviaqa.truncate_evidence(text, 13) == "alpha beta"  # inside "gamma": back to a space
  assert triviaqa.truncate_evidence(text, 3) == "alp"  # one word longer than the limit
  assert triviaqa.truncate_evidence(text, 0) == text  # 0: the whole document
  with pytest.raises(ValueError, match="must be 0 .whole documents. or positive"):
    triviaqa.truncate_evidence(text, -1)


def test_read_triviaqa_dev_gives_one_example_per_question_and_document(tmp_path):
  root = write_rc_tree(tmp_path)
  examples, skips = triviaqa.read_triviaqa(root, "dev", max_evidence_chars=1000)
  assert examples == EXPECTED_DEV
  # tc_1's entity page is listed in both the Wikipedia and the web qa file.
  assert skips.counts == {triviaqa.SKIP_DUPLICATE_PAIR: 1}
  assert triviaqa.no_evidence_summary(examples).startswith("1 of 3 (question, document) pairs")
  assert triviaqa.read_triviaqa(root, "validation", max_evidence_chars=1000)[0] == EXPECTED_DEV


def test_read_triviaqa_one_domain(tmp_path):
  root = write_rc_tree(tmp_path)
  examples, skips = triviaqa.read_triviaqa(root, "train", domains=("web",),
                                           max_evidence_chars=1000)
  assert [e.id for e in examples] == ["tc_1--Paris.txt", "tc_1--7/7_1.txt"]
  assert skips.total == 0


def test_truncation_that_cuts_every_alias_marks_no_evidence(tmp_path):
  root = write_rc_tree(tmp_path)
  examples, _ = triviaqa.read_triviaqa(root, "dev", domains=("wikipedia",), max_evidence_chars=35)
  paris = examples[0]
  assert paris.context == "Paris is the capital of France."
  assert paris.answers == (Answer("Paris", 0),) and not paris.no_evidence
  examples, _ = triviaqa.read_triviaqa(root, "dev", domains=("web",), max_evidence_chars=3)
  assert [(e.context, e.answers, e.no_evidence) for e in examples] == [
      ("Par", (), True), ("The", (), True)]


def test_test_split_and_unknown_domain_are_refused(tmp_path):
  root = write_rc_tree(tmp_path)
  with pytest.raises(ValueError, match="no public answers"):
    triviaqa.read_triviaqa(root, "test")
  with pytest.raises(ValueError, match="unknown TriviaQA domains"):
    triviaqa.read_triviaqa(root, "dev", domains=("news",))


def test_missing_qa_file_names_it(tmp_path):
  with pytest.raises(DataError, match=r"qa file not found .*wikipedia-dev\.json"):
    triviaqa.read_triviaqa(tmp_path, "dev")


def test_malformed_json_names_file_line_and_column(tmp_path):
  root = write_rc_tree(tmp_path)
  qa_path = root / "qa" / "web-dev.json"
  qa_path.write_text('{"Data": [\n  {"QuestionId": }\n]}', encoding="utf-8")
  with pytest.raises(DataError, match=r"malformed JSON: Expecting value at line 2, column 18 "
                                      r"\(file '.*web-dev\.json'\)"):
    triviaqa.read_triviaqa(root, "dev")


def test_bytes_that_are_not_utf8_in_a_qa_file(tmp_path):
  root = write_rc_tree(tmp_path)
  qa_path = root / "qa" / "wikipedia-dev.json"
  qa_path.write_bytes(qa_path.read_bytes().replace(b"capital", b"capit\xe4l"))
  with pytest.raises(DataError, match=r"not UTF-8 at byte offset \d+") as error:
    triviaqa.read_triviaqa(root, "dev")
  assert error.value.file == str(qa_path) and error.value.field == "Data[0].Question"


@pytest.mark.parametrize("path, field", [
    (("Answer", "Aliases"), "Answer.Aliases"),
    (("Answer", "Value"), "Answer.Value"),
    (("Question",), "Question"),
    (("EntityPages", 0, "Filename"), "EntityPages[0].Filename"),
    (("EntityPages", 0, "Title"), "EntityPages[0].Title"),
])
def test_missing_field_names_file_question_and_field(tmp_path, path, field):
  root = write_rc_tree(tmp_path)
  record = json.loads(json.dumps(NILE_QUESTION))
  parent = record
  for key in path[:-1]:
    parent = parent[key]
  del parent[path[-1]]
  write_qa_file(root / "qa" / "wikipedia-dev.json", [record], "wikipedia", "dev")
  with pytest.raises(DataError, match="missing field") as error:
    triviaqa.read_triviaqa(root, "dev", domains=("wikipedia",))
  assert (error.value.file, error.value.qid, error.value.field) == (
      str(root / "qa" / "wikipedia-dev.json"), "tc_2", field)


def test_missing_question_id_names_the_record(tmp_path):
  root = write_rc_tree(tmp_path)
  record = {k: v for k, v in NILE_QUESTION.items() if k != "QuestionId"}
  write_qa_file(root / "qa" / "wikipedia-dev.json", [PARIS_QUESTION, record], "wikipedia", "dev")
  with pytest.raises(DataError, match=r"missing field .*field 'Data\[1\]\.QuestionId'"):
    triviaqa.read_triviaqa(root, "dev", domains=("wikipedia",))


def test_missing_evidence_file_names_question_and_field(tmp_path):
  root = write_rc_tree(tmp_path)
  (root / "evidence" / "web" / "7" / "7_1.txt").unlink()
  with pytest.raises(DataError, match=r"evidence file '.*7_1\.txt' not found") as error:
    triviaqa.read_triviaqa(root, "dev")
  assert (error.value.qid, error.value.field) == ("tc_1", "SearchResults[0].Filename")


def test_evidence_that_is_not_utf8(tmp_path):
  root = write_rc_tree(tmp_path)
  (root / "evidence" / "wikipedia" / "Nile.txt").write_bytes(b"The Nile \xff flows.")
  with pytest.raises(DataError, match=r"Nile\.txt' has bytes that are not UTF-8 at byte "
                                      r"offset 9") as error:
    triviaqa.read_triviaqa(root, "dev")
  assert (error.value.qid, error.value.field) == ("tc_2", "EntityPages[0].Filename")


def test_empty_question_empty_evidence_and_no_documents_are_counted_skips(tmp_path):
  root = write_rc_tree(tmp_path)
  (root / "evidence" / "wikipedia" / "Nile.txt").write_text(" \n ", encoding="utf-8")
  no_question = dict(PARIS_QUESTION, QuestionId="tc_3", Question="  ")
  no_documents = dict(PARIS_QUESTION, QuestionId="tc_4", EntityPages=[])
  write_qa_file(root / "qa" / "wikipedia-dev.json",
                [PARIS_QUESTION, NILE_QUESTION, no_question, no_documents], "wikipedia", "dev")
  examples, skips = triviaqa.read_triviaqa(root, "dev", domains=("wikipedia",))
  assert [e.id for e in examples] == ["tc_1--Paris.txt"]
  assert skips.counts == {"empty context": 1, "empty question": 1,
                          triviaqa.SKIP_NO_DOCUMENTS: 1}
  assert skips.samples["empty context"] == ["tc_2--Nile.txt"]


def test_same_pair_with_different_content_is_an_error(tmp_path):
  root = write_rc_tree(tmp_path)
  changed = dict(PARIS_QUESTION, Question="Which city hosts the Louvre?",
                 SearchResults=[WEB_RESULT])
  write_qa_file(root / "qa" / "web-dev.json", [changed], "web", "dev")
  with pytest.raises(DataError, match="appears twice with different content") as error:
    triviaqa.read_triviaqa(root, "dev")
  assert error.value.qid == "tc_1--Paris.txt"


# Long documents in the official layout whose answers lie beyond any usual cut.
_FILLER_WORDS = ("river valley town bridge castle meadow harbour tower market church forest "
                 "road hill field mill square north south old new long wide the of and in").split()


def _filler(chars: int, seed: int) -> str:
  """Sentences of neutral words, about `chars` characters, none of them an answer alias."""
  rng = np.random.default_rng(seed)
  sentences, length = [], 0
  while length < chars:
    sentence = " ".join(rng.choice(_FILLER_WORDS, size=12)).capitalize() + "."
    sentences.append(sentence)
    length += len(sentence) + 1
  return " ".join(sentences)


DANUBE_PAGE = (_filler(6000, 1) + " It empties into the Black Sea near Sulina. " + _filler(5000, 2)
               + "\nThe delta on the black sea is a reserve. " + _filler(1500, 3))
EUXINE_PAGE = _filler(9000, 4) + " Ancient sailors called it the Euxine. " + _filler(400, 5)
VIENNA_PAGE = "Vienna lies on the Danube. " + _filler(7000, 6) + " Vienna hosts a ball. "
DANUBE_QUESTION = {
    "Answer": {"Aliases": ["Black Sea", "Euxine"], "Value": "Black Sea", "Type": "WikipediaEntity"},
    "EntityPages": [{"DocSource": "TagMe", "Filename": "Danube.txt", "Title": "Danube"}],
    "Question": "Into which sea does the Danube flow?", "QuestionId": "tc_10",
}
VIENNA_QUESTION = {
    "Answer": {"Aliases": ["Vienna", "Wien"], "Value": "Vienna", "Type": "WikipediaEntity"},
    "EntityPages": [{"DocSource": "TagMe", "Filename": "Vienna.txt", "Title": "Vienna"}],
    "Question": "Which capital lies on the Danube?", "QuestionId": "tc_11",
}
EUXINE_RESULT = {"Filename": "9/9_1.txt", "Rank": 0, "Title": "Old names of seas",
                 "Url": "http://seas.example"}
LONG_PAGES = {("wikipedia", "Danube.txt"): DANUBE_PAGE, ("wikipedia", "Vienna.txt"): VIENNA_PAGE,
              ("web", "9/9_1.txt"): EUXINE_PAGE}


def write_long_rc_tree(root: pathlib.Path) -> pathlib.Path:
  """A triviaqa-rc tree whose documents run to 12,000 characters, answers far into them."""
  for (domain, filename), text in LONG_PAGES.items():
    path = root / "evidence" / domain / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
  (root / "qa").mkdir(parents=True)
  write_qa_file(root / "qa" / "wikipedia-dev.json", [DANUBE_QUESTION, VIENNA_QUESTION],
                "wikipedia", "dev")
  write_qa_file(root / "qa" / "web-dev.json",
                [dict(DANUBE_QUESTION, EntityPages=[], SearchResults=[EUXINE_RESULT])], "web",
                "dev")
  return root


def test_whole_documents_keep_every_answer_at_exact_offsets(tmp_path, caplog):
  root = write_long_rc_tree(tmp_path)
  with caplog.at_level(logging.INFO, logger="l2d_jax.data.triviaqa"):
    examples, skips = triviaqa.read_triviaqa(root, "dev")
  assert skips.total == 0
  assert "read whole (max_evidence_chars=0): no answer cut" in caplog.text
  aliases = {"tc_10": ("Black Sea", "Euxine"), "tc_11": ("Vienna", "Wien")}
  by_id = {e.id: e for e in examples}
  assert sorted(by_id) == ["tc_10--9/9_1.txt", "tc_10--Danube.txt", "tc_11--Vienna.txt"]
  for (_, filename), text in LONG_PAGES.items():
    example = next(e for e in examples if e.id.endswith(f"--{filename}"))
    qid = example.id.split("--")[0]
    assert example.context == text.strip() and not example.no_evidence
    # Every occurrence of an alias in the document, at its exact offsets.
    assert example.answers == triviaqa.locate_aliases(text.strip(), aliases[qid])
    for answer in example.answers:
      assert example.context[answer.start:answer.end] == answer.text
  danube = by_id["tc_10--Danube.txt"]
  assert [a.text for a in danube.answers] == ["Black Sea", "black sea"]
  assert min(a.start for a in danube.answers) > 6000
  assert [a.text for a in by_id["tc_10--9/9_1.txt"].answers] == ["Euxine"]
  assert by_id["tc_10--9/9_1.txt"].answers[0].start > 9000
  assert [a.start for a in by_id["tc_11--Vienna.txt"].answers][0] == 0


def test_a_cut_keeps_the_answers_before_it_and_reports_what_it_cuts(tmp_path, caplog):
  root = write_long_rc_tree(tmp_path)
  with caplog.at_level(logging.WARNING, logger="l2d_jax.data.triviaqa"):
    examples, _ = triviaqa.read_triviaqa(root, "dev", max_evidence_chars=4000)
  # Of the 5 answer occurrences only Vienna's first survives the old default cut.
  assert [(e.id, len(e.answers), e.no_evidence) for e in examples] == [
      ("tc_10--Danube.txt", 0, True), ("tc_11--Vienna.txt", 1, False),
      ("tc_10--9/9_1.txt", 0, True)]
  assert all(len(e.context) <= 4000 for e in examples)
  assert ("TriviaQA dev: max_evidence_chars=4000 cut 4 of 5 answer occurrences; 2 of 3 "
          "(question, document) pairs with an answer in their document have none left") in (
              caplog.text)


def test_evidence_cut_counts_a_pair_read_twice_once():
  cut = triviaqa.EvidenceCut(100)
  for _ in range(2):  # the same pair from the Wikipedia and the web qa file
    triviaqa.evidence_examples("q", "Where?", ["Black Sea"],
                               [triviaqa.Evidence("d.txt", "D", DANUBE_PAGE)],
                               max_evidence_chars=100, skips=SkipReport(), cut=cut)
  assert (cut.answers_cut, cut.pairs_emptied) == (2, 1)


def test_token_windows_cover_the_whole_document(tmp_path):
  """Every answer of a whole document lies inside some window, at its exact characters."""
  examples, _ = triviaqa.read_triviaqa(write_long_rc_tree(tmp_path), "dev")
  tokenizer = load_tokenizer(wordpiece.save_tokenizer(
      wordpiece.train_wordpiece([e.context for e in examples] + [e.question for e in examples],
                                vocab_size=200), tmp_path / "tokenizer"))
  feats = features.make_features(examples, tokenizer, features.FeatureParams(128, 32, 16))
  for i, example in enumerate(examples):
    rows = np.flatnonzero(feats.example_index_F == i)
    assert len(rows) > 10  # thousands of characters: many windows, none dropped
    for answer in example.answers:
      inside = [f for f in rows if any(
          s == answer.start for s, _ in feats.offsets_FxLx2[f]) and any(
              e == answer.end for _, e in feats.offsets_FxLx2[f])]
      assert inside, (example.id, answer)
    # The training label (the first answer) maps back to its exact characters.
    first = example.answers[0]
    labelled = [f for f in rows if feats.start_positions_F[f]]
    assert labelled
    f = labelled[0]
    start, end = feats.start_positions_F[f], feats.end_positions_F[f]
    assert example.context[feats.offsets_FxLx2[f, start, 0]:feats.offsets_FxLx2[f, end, 1]] == (
        first.text)
