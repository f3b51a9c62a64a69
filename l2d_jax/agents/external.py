"""Agents that are not Flax models, written into the agent store: predictions files and the human.

A predictions-file agent is any system that answered the questions elsewhere
(an LLM, an API, another framework) and left a SQuAD-format predictions JSON
({question id: answer text}). The human agent answers with one of SQuAD's
several gold annotations and is scored against the others (leave-one-out, the
SQuAD paper's protocol), so its mean EM/F1 is `metrics.squad.human_performance`.

Neither has logits, so the store holds only their per-question rows: EM and F1
by the official metric, and NaN for span NLL, null score and span score;
`prob_E` is NaN too unless a predictions agent comes with a no-answer
probability file. Each agent's manifest `params` pin what its answers came
from (the predictions file's sha256, the annotator), so a store written from
another file is a `StoreMismatchError` rather than silently reused.
"""

from collections.abc import Sequence
import dataclasses
import hashlib
import logging
import math
import os
import pathlib

import numpy as np

from l2d_jax.agents import store as store_lib
from l2d_jax.data import squad as squad_data
from l2d_jax.data.example import DataError, Example, SkipReport
from l2d_jax.metrics import squad as squad_metric

_log = logging.getLogger(__name__)

SKIP_UNKNOWN_ID = "prediction for a question id not in the data"
SKIP_UNKNOWN_NA_PROB_ID = "no-answer probability for a question id not in the data"
_NAMED_IDS = 10  # how many missing or unscorable ids an error names


def predictions_agent(store_dir: str | os.PathLike, agent: str,
                      predictions_path: str | os.PathLike, examples: Sequence[Example], *,
                      version: str, fingerprints: store_lib.Fingerprints,
                      chunk_examples: int = 1024, na_probs_path: str | os.PathLike | None = None,
                      extra_manifest: dict | None = None) -> pathlib.Path:
  """Writes the answers of a SQuAD predictions file to the store as agent `agent`.

  Every question of `examples` must have a prediction (a `DataError` lists the
  missing ids); entries for ids not in `examples` are skipped, counted in the
  manifest's "skipped" and logged as a warning. With `na_probs_path` (question
  id -> no-answer probability, as evaluate-v2.0.py reads it), `prob_E` is the
  probability of the answer given, as for model agents: that probability for an
  empty answer, 1 minus it otherwise. `extra_manifest` (e.g. the agent's fee per
  query) goes into the manifest. Also writes `predictions.json` (the data's
  questions only) beside the chunks. Returns the agent's directory.
  """
  _check_version(version)
  predictions_path = str(predictions_path)
  report = SkipReport()
  predictions = _read_mapping(predictions_path, examples, _answer_text, "predicted answer text",
                              SKIP_UNKNOWN_ID, report)
  params = {"predictions_sha256": _sha256(predictions_path), "version": version}
  prob_E = np.full(len(examples), np.nan, np.float32)
  if na_probs_path is not None:
    na_probs_path = str(na_probs_path)
    na_probs = _read_mapping(na_probs_path, examples, _probability, "no-answer probability",
                             SKIP_UNKNOWN_NA_PROB_ID, report)
    na_E = np.array([na_probs[e.id] for e in examples], np.float32)
    abstains_E = np.array([not predictions[e.id] for e in examples])
    prob_E = np.where(abstains_E, na_E, 1.0 - na_E).astype(np.float32)
    params["na_probs_sha256"] = _sha256(na_probs_path)
  if report.total:
    _log.warning("agent %r from %s: %s", agent, predictions_path, report.summary())
  writer = store_lib.AgentWriter(
      store_dir, agent, kind="predictions", fingerprints=fingerprints,
      num_examples=len(examples), chunk_examples=chunk_examples, params=params)
  texts = [predictions[e.id] for e in examples]
  _write_rows(writer, examples, texts, prob_E, version)
  writer.finish(predictions_file=os.path.abspath(predictions_path),
                skipped=dict(report.counts), **(extra_manifest or {}))
  store_lib.atomic_write_json(writer.dir / "predictions.json",
                              {e.id: text for e, text in zip(examples, texts)})
  return writer.dir


def questions_with_annotator(examples: Sequence[Example], annotator: int) -> list[Example]:
  """The questions the human agent with annotation `annotator` can be scored on.

  Those with annotation `annotator` and at least one other to compare it with
  (more than max(annotator, 1) annotations, as `human_performance` counts), and
  the unanswerable ones (SQuAD v2.0), which the human answers with "".
  """
  _check_annotator(annotator)
  return [e for e in examples if _has_annotator(e, annotator)]


def human_agent(store_dir: str | os.PathLike, agent: str, examples: Sequence[Example], *,
                annotator: int = 1, version: str, fingerprints: store_lib.Fingerprints,
                chunk_examples: int = 1024, extra_manifest: dict | None = None) -> pathlib.Path:
  """Writes the human agent to the store: annotation `annotator` (0-based) answers.

  Each answer is scored against the question's remaining annotations
  (leave-one-out), so over answerable questions the agent's mean EM/F1 is
  `human_performance(examples, annotator, version)`. A SQuAD v2.0
  unanswerable question (no annotations) gets the answer "" scored against
  [""] as the official v2.0 metric does: EM = F1 = 1. Questions that cannot be
  scored (too few annotations; unanswerable under v1.1) are a `DataError`;
  `questions_with_annotator` keeps the others. Returns the agent's directory.
  """
  _check_version(version)
  _check_annotator(annotator)
  unscorable = [e.id for e in examples if not _has_annotator(e, annotator)
                or (version == "1.1" and e.is_impossible)]
  if unscorable:
    raise DataError(
        f"{len(unscorable)} of {len(examples)} questions cannot be scored leave-one-out with "
        f"annotation {annotator} (they need more than {max(annotator, 1)} annotations, or to be "
        f"unanswerable under SQuAD v2.0): {_some(unscorable)}; keep the others with "
        "questions_with_annotator()", qid=unscorable[0], field="answers")
  texts, others = [], []
  for example in examples:
    if example.is_impossible:
      texts.append("")
      others.append(example)
    else:
      texts.append(example.answers[annotator].text)
      others.append(dataclasses.replace(
          example, answers=example.answers[:annotator] + example.answers[annotator + 1:]))
  writer = store_lib.AgentWriter(
      store_dir, agent, kind="human", fingerprints=fingerprints, num_examples=len(examples),
      chunk_examples=chunk_examples, params={"annotator": annotator, "version": version})
  _write_rows(writer, others, texts, np.full(len(examples), np.nan, np.float32), version)
  writer.finish(**(extra_manifest or {}))
  return writer.dir


def _check_annotator(annotator: int) -> None:
  """Raises unless `annotator` is a valid 0-based annotation index."""
  if annotator < 0:
    raise ValueError(f"the annotator index must be >= 0, got {annotator}")


def _has_annotator(example: Example, annotator: int) -> bool:
  """Whether the human agent can answer `example` with annotation `annotator` and be scored."""
  if example.is_impossible:
    return not example.answers
  return len(example.answers) > max(annotator, 1)


def _write_rows(writer: store_lib.AgentWriter, scored_against: Sequence[Example],
                texts: list[str], prob_E: np.ndarray, version: str) -> None:
  """Writes the chunks not yet on disk: official EM/F1 of `texts`, NaN where there are no logits."""
  for c in sorted(set(range(writer.num_chunks)) - writer.done_chunks()):
    rows = writer.chunk_rows(c)
    scores_Ex2 = np.array(
        [squad_metric.example_scores(e, t, version)
         for e, t in zip(scored_against[rows], texts[rows])], np.float32).reshape(-1, 2)
    no_logits_E = np.full(len(scores_Ex2), np.nan, np.float32)
    writer.write_chunk(c, texts=texts[rows], examples={
        "em_E": scores_Ex2[:, 0], "f1_E": scores_Ex2[:, 1], "span_nll_E": no_logits_E,
        "null_score_E": no_logits_E, "score_E": no_logits_E, "prob_E": prob_E[rows]})


def _read_mapping(path: str, examples: Sequence[Example], check, what: str,
                  skip_reason: str, skips: SkipReport) -> dict:
  """A JSON object of question id -> value covering every question of `examples`.

  Missing ids, a value that `check` rejects and malformed JSON are a
  `DataError` naming the file (and the id); ids not in `examples` are counted
  in `skips` as `skip_reason`, their values unchecked.
  """
  mapping = squad_data.load_json(path)
  if not isinstance(mapping, dict):
    raise DataError(f"expected a JSON object of question id -> {what}, "
                    f"got {type(mapping).__name__}", file=path)
  known_ids = {e.id for e in examples}
  for qid in mapping:
    if qid not in known_ids:
      skips.skip(skip_reason, qid)
  for example in examples:
    if example.id in mapping and (problem := check(mapping[example.id])) is not None:
      raise DataError(f"expected a {what}, got {problem}", file=path, qid=example.id)
  if missing := [e.id for e in examples if e.id not in mapping]:
    raise DataError(f"{len(missing)} of {len(examples)} questions have no {what}: "
                    f"{_some(missing)}", file=path, qid=missing[0])
  return mapping


def _answer_text(value) -> str | None:
  """Why `value` is not an answer text, or None if it is one."""
  return None if isinstance(value, str) else f"{type(value).__name__} {value!r}"


def _probability(value) -> str | None:
  """Why `value` is not a probability in [0, 1], or None if it is one."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return f"{type(value).__name__} {value!r}"
  if not (math.isfinite(value) and 0.0 <= value <= 1.0):
    return f"{value!r}, outside [0, 1]"
  return None


def _some(ids: list[str]) -> str:
  """The first few of `ids`, and how many more there are."""
  named = ", ".join(repr(qid) for qid in ids[:_NAMED_IDS])
  return named + (f" and {len(ids) - _NAMED_IDS} more" if len(ids) > _NAMED_IDS else "")


def _sha256(path: str) -> str:
  """The hex sha256 of a file's bytes."""
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _check_version(version: str) -> None:
  """Raises unless `version` is a SQuAD version the metric knows."""
  if version not in squad_data.VERSIONS:
    raise ValueError(f"SQuAD version must be one of {squad_data.VERSIONS}, got {version!r}")
