"""Tests of l2d_jax/metrics/squad.py: official SQuAD EM/F1, by hand and against the scripts."""

import json

import pytest
from reference import squad_official

from l2d_jax.data import squad
from l2d_jax.data.example import Answer, DataError, Example
from l2d_jax.metrics import squad as metrics


def _example(qid: str, texts: list[str], is_impossible: bool = False) -> Example:
  """An example whose context is its answers joined, so that every offset is right."""
  context = " | ".join(texts) or "no answer here"
  starts = [context.index(text) for text in texts]
  return Example(qid, "T", context, f"question {qid}?",
                 tuple(Answer(t, s) for t, s in zip(texts, starts)), is_impossible=is_impossible)


V1_EXAMPLES = [_example("q1", ["the mat", "mat", "a red mat"]), _example("q2", ["cat"]),
               _example("q3", ["dog"])]
V1_PREDICTIONS = {"q1": "mat red rug", "q2": "The cat.", "extra": "not in the data"}
V2_EXAMPLES = [_example("h1", ["the city of Paris", "Paris"]), _example("h2", ["42"]),
               _example("n1", [], True), _example("n2", [], True)]
V2_PREDICTIONS = {"h1": "city of Paris France", "h2": "", "n1": "", "n2": "maybe"}


@pytest.mark.parametrize("text, normalized", [
    ("The  Quick, brown fox!", "quick brown fox"),
    ("an apple a day", "apple day"),
    ("Theater, then", "theater then"),
    ("  A.B.C. ", "abc"),
    ("Zürich's café", "zürichs café"),
    ("the", ""),
])
def test_normalize_answer(text, normalized):
  assert metrics.normalize_answer(text) == normalized


def test_exact_match_and_f1_by_hand():
  assert metrics.exact_match("The Cat!", "cat") == 1.0
  assert metrics.exact_match("cats", "cat") == 0.0
  assert metrics.f1("the cat sat", "cat sat on mat") == pytest.approx(2 / 3, abs=1e-15)
  assert metrics.f1("cat cat dog", "cat dog dog") == pytest.approx(2 / 3, abs=1e-15)
  assert metrics.f1("bird", "cat") == 0.0


def test_f1_of_empty_answers_differs_between_versions():
  # v1.1: no common token means 0; v2.0: two empty answers agree (a right "no answer").
  assert metrics.f1("", "", version="1.1") == 0.0
  assert metrics.f1("a", "the", version="2.0") == 1.0
  assert metrics.f1("cat", "", version="2.0") == 0.0
  assert metrics.exact_match("a", "the") == 1.0


def test_example_scores_take_the_max_over_gold_answers():
  # "mat red rug" vs "the mat": P=1/3, R=1 -> 0.5; vs "a red mat": P=2/3, R=1 -> 0.8.
  assert metrics.example_scores(V1_EXAMPLES[0], "mat red rug", "1.1") == (
      0.0, pytest.approx(0.8, abs=1e-15))
  assert metrics.example_scores(V1_EXAMPLES[0], "A red mat.", "1.1") == (1.0, 1.0)


def test_v2_scores_unanswerable_questions_against_the_empty_answer():
  assert metrics.example_scores(V2_EXAMPLES[2], "", "2.0") == (1.0, 1.0)
  assert metrics.example_scores(V2_EXAMPLES[2], "Paris", "2.0") == (0.0, 0.0)
  # A gold answer that normalizes to nothing counts in v1.1 and is dropped in v2.0.
  only_article = _example("x", ["the", "Paris"])
  assert metrics.example_scores(only_article, "a", "1.1") == (1.0, 0.0)
  assert metrics.example_scores(only_article, "a", "2.0") == (0.0, 0.0)
  assert metrics.gold_answers(_example("y", ["the"]), "2.0") == [""]


def test_score_v1_by_hand_counts_missing_predictions_as_zero(capsys):
  scores = metrics.score_v1(V1_EXAMPLES, V1_PREDICTIONS)
  assert list(scores) == ["exact_match", "f1"]
  assert scores["exact_match"] == pytest.approx(100 / 3, abs=1e-12)
  assert scores["f1"] == pytest.approx(100 * (0.8 + 1.0) / 3, abs=1e-12)
  assert capsys.readouterr().err == "Unanswered question q3 will receive score 0.\n"


def test_score_v2_by_hand():
  scores = metrics.score_v2(V2_EXAMPLES, V2_PREDICTIONS)
  # h1: EM 0, F1 6/7 (P=3/4, R=1 against "city of paris"); h2: "" vs "42" -> 0; n1: 1; n2: 0.
  assert scores == {
      "exact": 25.0, "f1": pytest.approx(100 * (6 / 7 + 1) / 4, abs=1e-12), "total": 4,
      "HasAns_exact": 0.0, "HasAns_f1": pytest.approx(100 * (6 / 7) / 2, abs=1e-12),
      "HasAns_total": 2, "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2}
  assert list(scores) == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
                          "NoAns_exact", "NoAns_f1", "NoAns_total"]


def test_score_v2_with_no_answer_probabilities_by_hand():
  na_probs = {"h1": 0.2, "h2": 0.9, "n1": 0.5, "n2": 0.8}
  scores = metrics.score_v2(V2_EXAMPLES, V2_PREDICTIONS, na_probs, na_prob_thresh=0.6)
  # Above 0.6, h2 and n2 answer "": h2 stays 0, n2 becomes right.
  assert scores["exact"] == 50.0
  assert scores["f1"] == pytest.approx(100 * (6 / 7 + 2) / 4, abs=1e-12)
  assert (scores["NoAns_exact"], scores["NoAns_f1"]) == (100.0, 100.0)
  # Best EM threshold: none beats answering nothing (2 of 4); best F1: answer h1 only (0.2).
  assert (scores["best_exact"], scores["best_exact_thresh"]) == (50.0, 0.0)
  assert scores["best_f1"] == pytest.approx(100 * (2 + 6 / 7) / 4, abs=1e-12)
  assert scores["best_f1_thresh"] == 0.2
  assert list(scores)[-4:] == ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]


def test_tiny_fixtures_match_the_official_scripts(tmp_path):
  na_probs = {"h1": 0.2, "h2": 0.9, "n1": 0.5, "n2": 0.8}
  files = {}
  for name, value in (("v1", V1_PREDICTIONS), ("v2", V2_PREDICTIONS), ("na", na_probs)):
    files[name] = tmp_path / f"{name}.json"
    files[name].write_text(json.dumps(value))
  squad.write_squad(tmp_path / "d1.json", V1_EXAMPLES, "1.1")
  squad.write_squad(tmp_path / "d2.json", V2_EXAMPLES, "2.0")
  official_v1, _ = squad_official.evaluate_v1(tmp_path / "d1.json", files["v1"])
  assert metrics.score_v1(V1_EXAMPLES, V1_PREDICTIONS) == pytest.approx(official_v1, abs=1e-12)
  official_v2 = squad_official.evaluate_v2(tmp_path / "d2.json", files["v2"], files["na"], 0.6)
  ours = metrics.score_v2(V2_EXAMPLES, V2_PREDICTIONS, na_probs, 0.6)
  assert list(ours) == list(official_v2)
  assert ours == pytest.approx(official_v2, abs=1e-12)


def test_score_v2_fails_on_a_missing_prediction_like_the_official_script(tmp_path, capsys):
  predictions = {k: v for k, v in V2_PREDICTIONS.items() if k != "n2"}
  with pytest.raises(DataError, match="1 of 4 questions have no prediction") as err:
    metrics.score_v2(V2_EXAMPLES, predictions)
  assert (err.value.qid, err.value.field) == ("n2", "predictions")
  assert "Missing prediction for n2" in capsys.readouterr().err
  squad.write_squad(tmp_path / "d2.json", V2_EXAMPLES, "2.0")
  (tmp_path / "p.json").write_text(json.dumps(predictions))
  with pytest.raises(KeyError, match="n2"):
    squad_official.evaluate_v2(tmp_path / "d2.json", tmp_path / "p.json")


def test_score_v2_fails_on_a_missing_no_answer_probability():
  with pytest.raises(DataError, match="1 questions have no no-answer probability") as err:
    metrics.score_v2(V2_EXAMPLES, V2_PREDICTIONS, {"h1": 0.1, "h2": 0.1, "n1": 0.1})
  assert (err.value.qid, err.value.field) == ("n2", "na_probs")


HUMAN_EXAMPLES = [_example("x1", ["Denver Broncos", "Broncos", "the Denver Broncos"]),
                  _example("x2", ["1990", "in 1990"]), _example("x3", ["blue"]),
                  _example("x4", [], True)]


def test_human_performance_by_hand():
  # k=0: x1 "Denver Broncos" matches "the Denver Broncos"; x2 "1990" vs "in 1990": F1 2/3.
  assert metrics.human_performance(HUMAN_EXAMPLES[:3], 0, "1.1") == {
      "exact_match": 50.0, "f1": pytest.approx(100 * (1 + 2 / 3) / 2, abs=1e-12), "total": 2,
      "annotator": 0, "questions_in_data": 3}
  # k=1: "Broncos" vs "Denver Broncos" and "in 1990" vs "1990": F1 2/3 each, no exact match.
  k1 = metrics.human_performance(HUMAN_EXAMPLES[:3], 1, "1.1")
  assert (k1["exact_match"], k1["f1"], k1["total"]) == (0.0, pytest.approx(200 / 3), 2)
  # k=2: only x1 has a third annotation; "the Denver Broncos" matches "Denver Broncos".
  k2 = metrics.human_performance(HUMAN_EXAMPLES[:3], 2, "1.1")
  assert (k2["exact_match"], k2["f1"], k2["total"]) == (100.0, 100.0, 1)
  with pytest.raises(ValueError, match="no question has more than 3 annotations"):
    metrics.human_performance(HUMAN_EXAMPLES, 3, "1.1")


def test_human_performance_v2_skips_unanswerable_questions():
  scores = metrics.human_performance(HUMAN_EXAMPLES, 0, "2.0")
  assert (scores["exact"], scores["total"], scores["questions_in_data"]) == (50.0, 2, 4)


def test_human_performance_on_real_dev_matches_the_official_functions(shared_squad):
  data = squad.read_squad(shared_squad / "dev-v1.1.json")
  official = squad_official.functions(squad_official.EVALUATE_V1_1)
  dataset = json.loads((shared_squad / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
  exact = f1 = total = 0
  for article in dataset:
    for paragraph in article["paragraphs"]:
      for qa in paragraph["qas"]:
        texts = [a["text"] for a in qa["answers"]]
        if len(texts) < 2:
          continue
        others = texts[:1] + texts[2:]
        best = official.metric_max_over_ground_truths
        exact += best(official.exact_match_score, texts[1], others)
        f1 += best(official.f1_score, texts[1], others)
        total += 1
  scores = metrics.human_performance(data.examples, 1, "1.1")
  assert scores["total"] == total == 10567
  assert scores["exact_match"] == pytest.approx(100.0 * exact / total, abs=1e-9)
  assert scores["f1"] == pytest.approx(100.0 * f1 / total, abs=1e-9)
