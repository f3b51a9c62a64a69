"""`l2d-jax score`: official SQuAD scores of a predictions file, or human performance.

A drop-in for evaluate-v1.1.py / evaluate-v2.0.py (same keys, same numbers;
the version is read from the data file) that also checks its inputs, so a bad
predictions file gets one line naming the file and question instead of a
traceback (a `DataError`, printed by `l2d_jax.cli`). `--human-annotator K`
scores annotation K against the others.
"""

import argparse
import json
import pathlib
import sys

from l2d_jax.data import squad
from l2d_jax.data.example import DataError
from l2d_jax.errors import UserError
from l2d_jax.metrics import squad as squad_metrics


def add_arguments(parser: argparse.ArgumentParser, command: str = "score") -> None:
  """Adds the options of `l2d-jax score`."""
  parser.add_argument("--data", required=True,
                      help="SQuAD v1.1 or v2.0 JSON file; its version picks the metric.")
  scored = parser.add_mutually_exclusive_group(required=True)
  scored.add_argument("--predictions", metavar="PRED.json",
                      help="JSON object mapping question id to predicted answer text.")
  scored.add_argument("--human-annotator", type=int, metavar="K",
                      help="Score annotation K (0-based) against the remaining annotations.")
  parser.add_argument("--na-prob-file", metavar="NA_PROB.json",
                      help="v2.0 only: JSON object mapping question id to P(no answer).")
  parser.add_argument("--na-prob-thresh", type=float, default=1.0,
                      help='v2.0 only: predict "" where P(no answer) exceeds this (default 1.0).')
  parser.add_argument("--out-file", metavar="EVAL.json",
                      help="Write the scores to this file instead of printing them.")


def run(args: argparse.Namespace) -> int:
  """Prints (or writes) the scores as JSON; bad input raises a UserError (a DataError)."""
  scores, version = _scores(args)
  if args.out_file:
    pathlib.Path(args.out_file).write_text(json.dumps(scores), encoding="utf-8")
  else:  # as each official script prints it
    print(json.dumps(scores, indent=2 if version == "2.0" else None))
  return 0


def _scores(args: argparse.Namespace) -> tuple[dict, str]:
  """The scores asked for, and the data file's SQuAD version."""
  data = squad.read_squad(args.data)
  if data.skips.total:
    print(f"{data.path}: {data.skips.summary()}\n(skipped questions are not scored)",
          file=sys.stderr)
  if args.na_prob_file and (data.version != "2.0" or args.human_annotator is not None):
    raise UserError("--na-prob-file applies to scoring predictions on SQuAD v2.0 data only")
  if args.human_annotator is not None:
    try:
      return squad_metrics.human_performance(
          data.examples, args.human_annotator, data.version), data.version
    except ValueError as err:  # a negative annotator, or too few annotations in the data
      raise DataError(str(err), file=args.data) from None
  if not data.examples:
    raise DataError("no questions to score", file=args.data)
  predictions = _read_mapping(args.predictions, str, "a predicted answer text")
  if data.version == "1.1":
    return squad_metrics.score_v1(data.examples, predictions), data.version
  na_probs = (_read_mapping(args.na_prob_file, (int, float), "a no-answer probability")
              if args.na_prob_file else None)
  try:
    return squad_metrics.score_v2(data.examples, predictions, na_probs,
                                  args.na_prob_thresh), data.version
  except DataError as err:
    blamed = args.na_prob_file if err.field == "na_probs" else args.predictions
    raise DataError(str(err), file=blamed) from None


def _read_mapping(path: str, kinds: type | tuple[type, ...], what: str) -> dict:
  """A JSON object of question id -> value of type `kinds`, or a `DataError` naming the entry."""
  mapping = squad.load_json(path)
  if not isinstance(mapping, dict):
    raise DataError(f"expected a JSON object of question id -> {what}, "
                    f"got {type(mapping).__name__}", file=path)
  for qid, value in mapping.items():
    if not isinstance(value, kinds) or isinstance(value, bool):
      raise DataError(f"expected {what}, got {type(value).__name__}", file=path, qid=qid)
  return mapping
