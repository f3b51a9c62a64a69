"""Tests of `l2d-jax score` (l2d_jax/metrics/score_cli.py): parity with the official scripts."""

import functools
import json
import pathlib

import numpy as np
import pytest
from reference import squad_official

from l2d_jax import cli
from l2d_jax.data import squad
from l2d_jax.data.example import Answer, Example


def _score(capsys, *argv: str) -> tuple[int, str, str]:
  """Runs `l2d-jax score ARGV...`; returns (exit status, stdout, stderr)."""
  status = cli.main(["score", *map(str, argv)])
  captured = capsys.readouterr()
  return status, captured.out, captured.err


def _dump(path: pathlib.Path, value) -> pathlib.Path:
  path.write_text(json.dumps(value), encoding="utf-8")
  return path


def _predictions(examples: list[Example], kind: str, rng: np.random.Generator) -> dict[str, str]:
  """Generated predictions: perturbed gold answers, random context spans or empty strings."""
  predictions = {}
  for example in examples:
    words = example.context.split()
    start = int(rng.integers(len(words)))
    span = " ".join(words[start:start + int(rng.integers(1, 8))])
    if kind == "empty":
      predictions[example.id] = ""
    elif kind == "spans" or (example.is_impossible and rng.random() < 0.3):
      predictions[example.id] = span
    elif example.is_impossible:
      predictions[example.id] = ""
    else:
      predictions[example.id] = _perturb(example, rng)
  return predictions


def _perturb(example: Example, rng: np.random.Generator) -> str:
  """A gold answer, kept, re-cased, trimmed by a word or extended into the context."""
  answer = example.answers[int(rng.integers(len(example.answers)))]
  words = answer.text.split()
  choice = int(rng.integers(5))
  if choice == 1:
    return f"The {answer.text.upper()}."
  if choice == 2 and len(words) > 1:
    return " ".join(words[1:] if rng.random() < 0.5 else words[:-1])
  if choice == 3:
    return example.context[answer.start:answer.end + int(rng.integers(1, 30))]
  return answer.text


@functools.cache
def _read(path: pathlib.Path) -> list[Example]:
  return squad.read_squad(path).examples


@pytest.fixture
def real(shared_squad) -> dict:
  """The real dev files and their examples (read once per session)."""
  return {version: (path, _read(path)) for version, path in
          (("1.1", shared_squad / "dev-v1.1.json"), ("2.0", shared_squad / "dev-v2.0-half.json"))}


@pytest.mark.parametrize("kind, seed, drop", [
    ("perturbed", 0, 0.0), ("spans", 1, 0.0), ("empty", 2, 0.0), ("perturbed", 3, 0.07)])
def test_v1_matches_the_official_script_on_real_dev(real, tmp_path, capsys, kind, seed, drop):
  data_path, examples = real["1.1"]
  rng = np.random.default_rng(seed)
  predictions = _predictions(examples, kind, rng)
  predictions = {k: v for k, v in predictions.items() if rng.random() >= drop}
  pred_path = _dump(tmp_path / "pred.json", predictions)
  status, out, err = _score(capsys, "--data", data_path, "--predictions", pred_path)
  official, official_err = squad_official.evaluate_v1(data_path, pred_path)
  assert status == 0
  ours = json.loads(out)
  assert list(ours) == list(official) == ["exact_match", "f1"]
  assert ours == pytest.approx(official, abs=1e-6)
  assert err.splitlines() == official_err.splitlines()  # the same "Unanswered question" lines
  assert (len(err.splitlines()) > 300) == (drop > 0)


@pytest.mark.parametrize("kind, seed, na_probs, thresh", [
    ("perturbed", 10, False, None), ("spans", 11, False, None), ("empty", 12, False, None),
    ("perturbed", 13, True, None), ("perturbed", 14, True, 0.45), ("spans", 15, True, 0.3)])
def test_v2_matches_the_official_script_on_real_dev(real, tmp_path, capsys, kind, seed, na_probs,
                                                    thresh):
  data_path, examples = real["2.0"]
  rng = np.random.default_rng(seed)
  predictions = _predictions(examples, kind, rng)
  predictions["not-a-question"] = "extra ids are ignored"
  argv = ["--data", data_path, "--predictions", _dump(tmp_path / "pred.json", predictions)]
  official_args = {}
  if na_probs:  # two decimals, so that thresholds tie; shuffled, so that ties keep file order
    ids = [e.id for e in examples]
    probs = {ids[i]: round(float(rng.random()), 2) for i in rng.permutation(len(ids))}
    official_args["na_prob_file"] = _dump(tmp_path / "na.json", probs)
    argv += ["--na-prob-file", official_args["na_prob_file"]]
  if thresh is not None:
    official_args["na_prob_thresh"] = thresh
    argv += ["--na-prob-thresh", thresh]
  status, out, _ = _score(capsys, *argv)
  official = squad_official.evaluate_v2(data_path, tmp_path / "pred.json", **official_args)
  assert status == 0
  ours = json.loads(out)
  assert list(ours) == list(official)
  assert len(ours) == (13 if na_probs else 9)
  assert ours == pytest.approx(official, abs=1e-6)


def test_v2_fails_on_missing_predictions_as_the_official_script_does(real, tmp_path, capsys):
  data_path, examples = real["2.0"]
  predictions = {e.id: "" for e in examples[1:]}
  pred_path = _dump(tmp_path / "pred.json", predictions)
  status, out, err = _score(capsys, "--data", data_path, "--predictions", pred_path)
  assert (status, out) == (2, "")
  assert f"Missing prediction for {examples[0].id}" in err
  assert "1 of 6078 questions have no prediction" in err and str(pred_path) in err
  with pytest.raises(KeyError):
    squad_official.evaluate_v2(data_path, pred_path)


def test_human_annotator_on_real_dev_v1(real, capsys):
  status, out, _ = _score(capsys, "--data", real["1.1"][0], "--human-annotator", 1)
  scores = json.loads(out)
  assert status == 0
  assert (scores["total"], scores["questions_in_data"], scores["annotator"]) == (10567, 10570, 1)
  assert (round(scores["exact_match"], 4), round(scores["f1"], 4)) == (81.5274, 91.0445)


def _tiny_data(tmp_path: pathlib.Path) -> pathlib.Path:
  context = "Denver Broncos won in 1990."
  examples = [
      Example("x1", "T", context, "Who won?", (Answer("Denver Broncos", 0), Answer("Broncos", 7),
                                              Answer("Denver Broncos won", 0))),
      Example("x2", "T", context, "When?", (Answer("1990", 22), Answer("in 1990", 19))),
      Example("x3", "T", context, "Colour?", (Answer("won", 15),)),
  ]
  squad.write_squad(tmp_path / "tiny.json", examples, "1.1")
  return tmp_path / "tiny.json"


def test_human_annotator_on_a_tiny_file_by_hand(tmp_path, capsys):
  status, out, _ = _score(capsys, "--data", _tiny_data(tmp_path), "--human-annotator", 0)
  # x1: "Denver Broncos" vs "Broncos" (F1 2/3) and "Denver Broncos won" (F1 0.8): EM 0, F1 0.8.
  # x2: "1990" vs "in 1990": EM 0, F1 2/3. x3 has one annotation only: not scored.
  assert status == 0
  assert json.loads(out) == {"exact_match": 0.0, "f1": pytest.approx(100 * (0.8 + 2 / 3) / 2),
                             "total": 2, "annotator": 0, "questions_in_data": 3}


def test_predictions_print_one_json_line_or_go_to_the_out_file(tmp_path, capsys):
  data_path = _tiny_data(tmp_path)
  pred_path = _dump(tmp_path / "pred.json", {"x1": "the Denver Broncos", "x2": "1990 AD",
                                             "x3": "won"})
  status, out, _ = _score(capsys, "--data", data_path, "--predictions", pred_path)
  # x1 exact; x2 "1990 AD" vs "1990": F1 2/3; x3 exact.
  assert status == 0 and out.count("\n") == 1
  assert json.loads(out) == {"exact_match": pytest.approx(200 / 3),
                             "f1": pytest.approx(100 * (2 + 2 / 3) / 3)}
  status, out, _ = _score(capsys, "--data", data_path, "--predictions", pred_path,
                          "--out-file", tmp_path / "eval.json")
  assert (status, out) == (0, "")
  assert json.loads((tmp_path / "eval.json").read_text())["exact_match"] == pytest.approx(200 / 3)


@pytest.mark.parametrize("predictions, message", [
    ([1, 2], "expected a JSON object of question id -> a predicted answer text, got list"),
    ({"x1": "a", "x2": 3}, "expected a predicted answer text, got int (file '{pred}', "
                           "question id 'x2')"),
])
def test_bad_predictions_files_are_named(tmp_path, capsys, predictions, message):
  pred_path = _dump(tmp_path / "pred.json", predictions)
  status, out, err = _score(capsys, "--data", _tiny_data(tmp_path), "--predictions", pred_path)
  assert (status, out) == (2, "")
  assert message.format(pred=pred_path) in err


def test_bad_option_combinations_and_data_files_are_reported(tmp_path, capsys):
  data_path = _tiny_data(tmp_path)
  pred_path = _dump(tmp_path / "pred.json", {"x1": ""})
  status, _, err = _score(capsys, "--data", data_path, "--predictions", pred_path,
                          "--na-prob-file", pred_path)
  assert status == 2 and "--na-prob-file applies to scoring predictions on SQuAD v2.0" in err
  (tmp_path / "broken.json").write_text('{"data": [}')
  status, _, err = _score(capsys, "--data", tmp_path / "broken.json", "--human-annotator", 0)
  assert status == 2 and "malformed JSON: Expecting value at line 1, column 11" in err
  with pytest.raises(SystemExit):
    _score(capsys, "--data", data_path, "--predictions", pred_path, "--human-annotator", 0)
