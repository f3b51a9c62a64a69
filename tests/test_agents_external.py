"""Predictions-file and human agents: store round trips against the official metric, bad input."""

import json
import logging
import pathlib

import numpy as np
import pytest

from l2d_jax.agents import external
from l2d_jax.agents import store as store_lib
from l2d_jax.data import squad
from l2d_jax.data.example import Answer, DataError, Example
from l2d_jax.metrics import squad as metrics

FINGERPRINTS = store_lib.Fingerprints(data="data-1")


def _example(qid: str, texts: list[str], is_impossible: bool = False) -> Example:
  """An example whose context is its answers joined, so that every offset is right."""
  context = " | ".join(texts) or "no answer here"
  return Example(qid, "T", context, f"question {qid}?",
                 tuple(Answer(t, context.index(t)) for t in texts), is_impossible=is_impossible)


V1_EXAMPLES = [_example("q1", ["the mat", "mat", "a red mat"]), _example("q2", ["cat", "a cat"]),
               _example("q3", ["dog", "the dog", "hot dog"]), _example("q4", ["Paris"]),
               _example("q5", ["42", "forty-two", "42 years"])]
V1_PREDICTIONS = {"q1": "mat red rug", "q2": "The cat.", "q3": "dogs", "q4": "paris",
                  "q5": "", "extra-1": "not in the data", "extra-2": 7}
V2_EXAMPLES = [_example("h1", ["the city of Paris", "Paris", "city of Paris"]),
               _example("h2", ["42", "42 years"]), _example("n1", [], True),
               _example("n2", [], True)]
V2_PREDICTIONS = {"h1": "city of Paris France", "h2": "", "n1": "", "n2": "maybe"}
V2_NA_PROBS = {"h1": 0.25, "h2": 0.5, "n1": 1.0, "n2": 0.0}


def _write(path, obj) -> str:
  path.write_text(json.dumps(obj), encoding="utf-8")
  return str(path)


def test_predictions_agent_round_trip_v1(tmp_path, caplog):
  predictions = _write(tmp_path / "pred.json", V1_PREDICTIONS)
  with caplog.at_level(logging.WARNING, logger="l2d_jax.agents.external"):
    agent_dir = external.predictions_agent(
        tmp_path / "store", "llm", predictions, V1_EXAMPLES, version="1.1",
        fingerprints=FINGERPRINTS, chunk_examples=2, extra_manifest={"fee": 3.5})
  # ids not in the data are skipped (their values unchecked), counted and logged
  assert "skipped 2 records" in caplog.text and "extra-1" in caplog.text
  store = store_lib.AgentStore(tmp_path / "store", ["llm"], data_fingerprint="data-1")
  manifest = store.manifests["llm"]
  assert manifest["kind"] == "predictions" and manifest["fee"] == 3.5
  assert manifest["skipped"] == {external.SKIP_UNKNOWN_ID: 2}
  assert manifest["num_examples"] == 5 and pathlib.Path(agent_dir, "chunk-00002.json").exists()
  written = json.loads((agent_dir / "predictions.json").read_text())
  assert written == {e.id: V1_PREDICTIONS[e.id] for e in V1_EXAMPLES}
  assert store.answers("llm") == [V1_PREDICTIONS[e.id] for e in V1_EXAMPLES]
  em, f1 = store.example_table("em_E")[:, 0], store.example_table("f1_E")[:, 0]
  np.testing.assert_array_equal(em, [0, 1, 0, 1, 0])
  np.testing.assert_allclose(f1, [0.8, 1, 0, 1, 0], atol=1e-7)
  official = metrics.score_v1(V1_EXAMPLES, written)
  assert 100 * em.mean() == pytest.approx(official["exact_match"], abs=1e-5)
  assert 100 * f1.mean() == pytest.approx(official["f1"], abs=1e-5)
  for field in ("span_nll_E", "null_score_E", "score_E", "prob_E"):
    assert np.isnan(store.example_table(field)).all(), field
  with pytest.raises(ValueError, match="stores no logits"):
    store.logits("llm", 0)


def test_predictions_agent_v2_with_no_answer_probabilities(tmp_path):
  predictions = _write(tmp_path / "pred.json", V2_PREDICTIONS)
  na_probs = _write(tmp_path / "na.json", {**V2_NA_PROBS, "extra": 2.0})
  external.predictions_agent(tmp_path, "api", predictions, V2_EXAMPLES, version="2.0",
                             fingerprints=FINGERPRINTS, na_probs_path=na_probs)
  store = store_lib.AgentStore(tmp_path, ["api"])
  em, f1 = store.example_table("em_E")[:, 0], store.example_table("f1_E")[:, 0]
  official = metrics.score_v2(V2_EXAMPLES, V2_PREDICTIONS)
  assert 100 * em.mean() == pytest.approx(official["exact"], abs=1e-5)
  assert 100 * f1.mean() == pytest.approx(official["f1"], abs=1e-5)
  np.testing.assert_array_equal(em, [0, 0, 1, 0])  # "" right only where there is no answer
  # The probability of the answer given: 1 - P(no answer), or P(no answer) for "" (h2, n1).
  np.testing.assert_allclose(store.example_table("prob_E")[:, 0], [0.75, 0.5, 1.0, 1.0])
  assert store.manifests["api"]["skipped"] == {external.SKIP_UNKNOWN_NA_PROB_ID: 1}
  assert set(store.manifests["api"]["params"]) == {"predictions_sha256", "na_probs_sha256",
                                                   "version"}


def test_missing_predictions_are_an_error_listing_them(tmp_path):
  examples = [_example(f"q{i:02d}", ["cat"]) for i in range(13)]
  predictions = _write(tmp_path / "pred.json", {"q00": "cat"})
  with pytest.raises(DataError) as err:
    external.predictions_agent(tmp_path / "store", "llm", predictions, examples, version="1.1",
                               fingerprints=FINGERPRINTS)
  message = str(err.value)
  assert "12 of 13 questions have no predicted answer text" in message
  named = ", ".join(f"'q{i:02d}'" for i in range(1, 11))
  assert f"{named} and 2 more" in message
  assert "'q11'" not in message and err.value.file == predictions
  assert not (tmp_path / "store").exists()  # nothing written


@pytest.mark.parametrize("content, expected", [
    ('{"q1": "mat", ', "malformed JSON"),
    ('["mat"]', "expected a JSON object of question id -> predicted answer text, got list"),
    ('{"q1": "mat", "q2": 3}', "expected a predicted answer text, got int 3.*question id 'q2'"),
    ('{"q1": "mat", "q2": null}', "got NoneType None.*question id 'q2'"),
])
def test_bad_predictions_files_name_the_file_and_question(tmp_path, content, expected):
  path = tmp_path / "pred.json"
  path.write_text(content, encoding="utf-8")
  with pytest.raises(DataError, match=expected) as err:
    external.predictions_agent(tmp_path, "llm", path, V1_EXAMPLES[:2], version="1.1",
                               fingerprints=FINGERPRINTS)
  assert err.value.file == str(path)


def test_bad_no_answer_probabilities(tmp_path):
  predictions = _write(tmp_path / "pred.json", V2_PREDICTIONS)
  na_probs = _write(tmp_path / "na.json", {**V2_NA_PROBS, "h2": 1.5})
  with pytest.raises(DataError, match="1.5, outside .*question id 'h2'"):
    external.predictions_agent(tmp_path, "api", predictions, V2_EXAMPLES, version="2.0",
                               fingerprints=FINGERPRINTS, na_probs_path=na_probs)
  na_probs = _write(tmp_path / "na.json", {"h1": 0.5})
  with pytest.raises(DataError, match="3 of 4 questions have no no-answer probability"):
    external.predictions_agent(tmp_path, "api", predictions, V2_EXAMPLES, version="2.0",
                               fingerprints=FINGERPRINTS, na_probs_path=na_probs)


def test_changed_predictions_file_is_detected(tmp_path):
  path = tmp_path / "pred.json"
  _write(path, V1_PREDICTIONS)
  kwargs = dict(version="1.1", fingerprints=FINGERPRINTS, chunk_examples=2)
  external.predictions_agent(tmp_path / "store", "llm", path, V1_EXAMPLES, **kwargs)
  external.predictions_agent(tmp_path / "store", "llm", path, V1_EXAMPLES, **kwargs)  # same: ok
  _write(path, {**V1_PREDICTIONS, "q3": "the dog"})
  with pytest.raises(store_lib.StoreMismatchError, match="other settings"):
    external.predictions_agent(tmp_path / "store", "llm", path, V1_EXAMPLES, **kwargs)
  assert store_lib.AgentStore(tmp_path / "store", ["llm"]).answers("llm")[2] == "dogs"


HUMAN_EXAMPLES = [_example("a", ["the mat", "mat", "red mat"]),
                  _example("b", ["cat", "dog", "a cat"]),
                  _example("c", ["Paris", "city of Paris"]),
                  _example("d", ["one"]),
                  _example("n", [], True)]


def _human_table(tmp_path, examples, annotator, version, name="human", chunk_examples=2):
  external.human_agent(tmp_path, name, examples, annotator=annotator, version=version,
                       fingerprints=FINGERPRINTS, chunk_examples=chunk_examples)
  store = store_lib.AgentStore(tmp_path, [name])
  return store, store.example_table("em_E")[:, 0], store.example_table("f1_E")[:, 0]


def test_human_agent_is_leave_one_out_and_matches_human_performance(tmp_path):
  kept = external.questions_with_annotator(HUMAN_EXAMPLES, 1)
  assert [e.id for e in kept] == ["a", "b", "c", "n"]
  assert [e.id for e in external.questions_with_annotator(HUMAN_EXAMPLES, 2)] == ["a", "b", "n"]
  # annotation 0 still needs another one to be scored against
  assert [e.id for e in external.questions_with_annotator(HUMAN_EXAMPLES, 0)] == [
      "a", "b", "c", "n"]
  store, em, f1 = _human_table(tmp_path, kept, 1, "2.0")
  assert store.answers("human") == ["mat", "dog", "city of Paris", ""]
  assert store.manifests["human"]["kind"] == "human"
  # "mat" vs {"the mat", "red mat"}; "dog" vs {"cat", "a cat"}; "city of Paris" vs {"Paris"}
  np.testing.assert_array_equal(em, [1, 0, 0, 1])
  np.testing.assert_allclose(f1, [1, 0, 0.5, 1], atol=1e-7)  # "" vs [""]: 1 (v2.0)
  assert np.isnan(store.example_table("span_nll_E")).all()
  reference = metrics.human_performance(HUMAN_EXAMPLES, 1, "2.0")  # answerable questions only
  assert reference["total"] == 3
  assert 100 * em[:3].mean() == pytest.approx(reference["exact"], abs=1e-5)
  assert 100 * f1[:3].mean() == pytest.approx(reference["f1"], abs=1e-5)
  answerable = [e for e in kept if not e.is_impossible]
  for k in (0, 1, 2):
    subset = external.questions_with_annotator(answerable, k)
    _, em, f1 = _human_table(tmp_path, subset, k, "1.1", name=f"human-{k}")
    reference = metrics.human_performance(answerable, k, "1.1")
    assert reference["total"] == len(subset)
    assert 100 * em.mean() == pytest.approx(reference["exact_match"], abs=1e-5)
    assert 100 * f1.mean() == pytest.approx(reference["f1"], abs=1e-5)


def test_human_agent_refuses_questions_it_cannot_score(tmp_path):
  with pytest.raises(ValueError, match="annotator index must be >= 0, got -1"):
    external.questions_with_annotator(HUMAN_EXAMPLES, -1)
  with pytest.raises(DataError, match=r"1 of 5 questions cannot be scored leave-one-out with "
                     r"annotation 1 .*: 'd'; keep the others"):
    external.human_agent(tmp_path, "human", HUMAN_EXAMPLES, version="2.0",
                         fingerprints=FINGERPRINTS)
  with pytest.raises(DataError, match=r"2 of 5 questions .*: 'd', 'n'"):  # v1.1: no "no answer"
    external.human_agent(tmp_path, "human", HUMAN_EXAMPLES, version="1.1",
                         fingerprints=FINGERPRINTS)
  assert not (tmp_path / "human").exists()


def test_human_agent_on_real_dev_v11_matches_human_performance(shared_squad, tmp_path):
  data = squad.read_squad(shared_squad / "dev-v1.1.json")
  kept = external.questions_with_annotator(data.examples, 1)
  dropped = len(data.examples) - len(kept)
  assert 0 < dropped < len(data.examples) // 10
  with pytest.raises(DataError, match=f"{dropped} of {len(data.examples)} questions cannot"):
    external.human_agent(tmp_path, "human", data.examples, version="1.1",
                         fingerprints=FINGERPRINTS)
  _, em, f1 = _human_table(tmp_path, kept, 1, "1.1", chunk_examples=1024)
  reference = metrics.human_performance(data.examples, 1, "1.1")
  assert reference["total"] == len(kept) == len(em)
  assert 100 * em.astype(np.float64).mean() == pytest.approx(reference["exact_match"], abs=1e-4)
  assert 100 * f1.astype(np.float64).mean() == pytest.approx(reference["f1"], abs=1e-4)
