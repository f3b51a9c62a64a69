"""The official SQuAD evaluation semantics (v1.1 and v2.0): EM, token F1 and their aggregates.

Reported numbers must be comparable with published ones, so this follows
evaluate-v1.1.py and evaluate-v2.0.py exactly, down to their quirks: v1.1
counts a question without a prediction as 0; v2.0 fails when a prediction is
missing, compares empty token lists as equal (F1 1.0), drops gold answers that
normalize to nothing and scores unanswerable questions against [""]. The
agents, costs and evaluation stages score single answers with
`example_scores`; `score_v1`/`score_v2` give the official aggregates.
"""

import collections
from collections.abc import Mapping, Sequence
import dataclasses
import re
import string
import sys

from l2d_jax.data.example import DataError, Example

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
  """Lower-cases and drops punctuation, the articles a/an/the and extra whitespace."""
  text = text.lower().translate(_DROP_PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, truth: str) -> float:
  """1.0 if the two answers are equal after normalization, else 0.0."""
  return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction: str, truth: str, *, version: str = "1.1") -> float:
  """Token-overlap F1 of two answers after normalization.

  Where either side has no tokens, v1.1 gives 0.0 and v2.0 gives 1.0 if both
  are empty (a correct "no answer") and 0.0 otherwise.
  """
  return _token_f1(normalize_answer(prediction).split(), normalize_answer(truth).split(), version)


def gold_answers(example: Example, version: str) -> list[str]:
  """The answers a prediction is scored against.

  v1.1: all of them. v2.0: those that normalize to something, or [""] where
  none does (unanswerable questions).
  """
  texts = [answer.text for answer in example.answers]
  if version == "1.1":
    if not texts:
      raise ValueError(f"question {example.id!r} has no gold answer to score against (SQuAD v1.1)")
    return texts
  _check_version(version)
  return [text for text in texts if normalize_answer(text)] or [""]


def example_scores(example: Example, prediction: str, version: str) -> tuple[float, float]:
  """(EM, F1) of one prediction, each the maximum over the example's gold answers."""
  return _max_over_golds(prediction, gold_answers(example, version), version)


def score_v1(examples: Sequence[Example], predictions: Mapping[str, str]) -> dict[str, float]:
  """The official v1.1 aggregate, in percent: {"exact_match", "f1"}.

  A question without a prediction scores 0 and is named on stderr, as the
  official script does.
  """
  if not examples:
    raise ValueError("no questions to score")
  exact_total = f1_total = 0.0
  for example in examples:
    if example.id not in predictions:
      print(f"Unanswered question {example.id} will receive score 0.", file=sys.stderr)
      continue
    exact, token_f1 = example_scores(example, predictions[example.id], "1.1")
    exact_total += exact
    f1_total += token_f1
  return {"exact_match": 100.0 * exact_total / len(examples),
          "f1": 100.0 * f1_total / len(examples)}


def score_v2(examples: Sequence[Example], predictions: Mapping[str, str],
             na_probs: Mapping[str, float] | None = None,
             na_prob_thresh: float = 1.0) -> dict[str, float | int]:
  """The official v2.0 aggregate, with the official keys in the official order.

  {exact, f1, total, HasAns_*, NoAns_* (where such questions exist)}, and with
  `na_probs` (question id -> probability of no answer) also best_exact,
  best_exact_thresh, best_f1, best_f1_thresh. A question whose no-answer
  probability exceeds `na_prob_thresh` is answered "". Missing predictions (or
  no-answer probabilities) are named on stderr and raise a `DataError`, where
  the official script fails with a KeyError.
  """
  if not examples:
    raise ValueError("no questions to score")
  has_answer = {example.id: bool(example.answers) for example in examples}
  exact_raw, f1_raw = {}, {}
  missing = []
  for example in examples:
    if example.id not in predictions:
      print(f"Missing prediction for {example.id}", file=sys.stderr)
      missing.append(example.id)
      continue
    exact_raw[example.id], f1_raw[example.id] = example_scores(
        example, predictions[example.id], "2.0")
  if missing:
    raise DataError(f"{len(missing)} of {len(examples)} questions have no prediction (the "
                    "official v2.0 script fails on this too)", qid=missing[0], field="predictions")
  probs = {qid: 0.0 for qid in predictions} if na_probs is None else na_probs
  if absent := [qid for qid in exact_raw if qid not in probs]:
    raise DataError(f"{len(absent)} questions have no no-answer probability", qid=absent[0],
                    field="na_probs")

  def thresholded(raw: dict[str, float]) -> dict[str, float]:
    return {qid: float(not has_answer[qid]) if probs[qid] > na_prob_thresh else score
            for qid, score in raw.items()}

  exact, token_f1 = thresholded(exact_raw), thresholded(f1_raw)
  scores = _percentages(exact, token_f1, list(exact))
  for prefix, wanted in (("HasAns", True), ("NoAns", False)):
    if qids := [qid for qid, has in has_answer.items() if has == wanted]:
      scores.update({f"{prefix}_{key}": value
                     for key, value in _percentages(exact, token_f1, qids).items()})
  if na_probs is not None:
    scores["best_exact"], scores["best_exact_thresh"] = _best_threshold(
        predictions, exact_raw, na_probs, has_answer)
    scores["best_f1"], scores["best_f1_thresh"] = _best_threshold(
        predictions, f1_raw, na_probs, has_answer)
  return scores


def human_performance(examples: Sequence[Example], k: int, version: str) -> dict[str, float | int]:
  """Human EM/F1 by the SQuAD paper's protocol: annotation `k` (0-based) against the others.

  Scored over the questions with more than `k` annotations and at least one
  other to compare with; `total` says how many that is. The EM key is the
  version's official one ("exact_match" for v1.1, "exact" for v2.0).
  """
  _check_version(version)
  if k < 0:
    raise ValueError(f"the annotator index must be >= 0, got {k}")
  exact_total = f1_total = 0.0
  total = 0
  for example in examples:
    if len(example.answers) <= max(k, 1):
      continue
    others = dataclasses.replace(example, answers=example.answers[:k] + example.answers[k + 1:])
    exact, token_f1 = example_scores(others, example.answers[k].text, version)
    exact_total += exact
    f1_total += token_f1
    total += 1
  if not total:
    raise ValueError(f"no question has more than {max(k, 1)} annotations")
  return {"exact_match" if version == "1.1" else "exact": 100.0 * exact_total / total,
          "f1": 100.0 * f1_total / total, "total": total, "annotator": k,
          "questions_in_data": len(examples)}


def _check_version(version: str) -> None:
  """Raises unless `version` is "1.1" or "2.0"."""
  if version not in ("1.1", "2.0"):
    raise ValueError(f"SQuAD version must be '1.1' or '2.0', got {version!r}")


def _token_f1(prediction_tokens: list[str], truth_tokens: list[str], version: str) -> float:
  """F1 of two normalized token lists (see `f1`)."""
  if version == "2.0" and (not prediction_tokens or not truth_tokens):
    return float(prediction_tokens == truth_tokens)
  common = collections.Counter(prediction_tokens) & collections.Counter(truth_tokens)
  num_same = sum(common.values())
  if num_same == 0:
    return 0.0
  precision = 1.0 * num_same / len(prediction_tokens)
  recall = 1.0 * num_same / len(truth_tokens)
  return (2 * precision * recall) / (precision + recall)


def _max_over_golds(prediction: str, golds: list[str], version: str) -> tuple[float, float]:
  """(max EM, max F1) of `prediction` over `golds`, normalizing the prediction once."""
  normalized = normalize_answer(prediction)
  tokens = normalized.split()
  exact = token_f1 = 0.0
  for gold in golds:
    gold_normalized = normalize_answer(gold)
    exact = max(exact, float(normalized == gold_normalized))
    token_f1 = max(token_f1, _token_f1(tokens, gold_normalized.split(), version))
  return exact, token_f1


def _percentages(exact: dict[str, float], token_f1: dict[str, float],
                 qids: list[str]) -> dict[str, float | int]:
  """{exact, f1, total} over `qids`, in percent, summed in the official order."""
  return {"exact": 100.0 * sum(exact[qid] for qid in qids) / len(qids),
          "f1": 100.0 * sum(token_f1[qid] for qid in qids) / len(qids),
          "total": len(qids)}


def _best_threshold(predictions: Mapping[str, str], raw: dict[str, float],
                    na_probs: Mapping[str, float],
                    has_answer: dict[str, bool]) -> tuple[float, float]:
  """The best score over no-answer thresholds and that threshold (the official find_best_thresh)."""
  score = best = sum(1 for has in has_answer.values() if not has)
  best_thresh = 0.0
  for qid in sorted(na_probs, key=lambda q: na_probs[q]):
    if qid not in raw:
      continue
    if has_answer[qid]:
      score += raw[qid]
    elif predictions[qid]:
      score -= 1
    if score > best:
      best, best_thresh = score, na_probs[qid]
  return 100.0 * best / len(raw), best_thresh
