"""Converts SQuAD dev v1.1 to MiniLM features and checks that the labels decode back to the answers.

The check of issue 2: with the all-MiniLM-L6-v2 tokenizer at max_seq_len=384,
doc_stride=128, the labelled token span of the first gold answer (in a window
that holds it) must decode back to that answer, after SQuAD normalization, for
at least 99% of answerable questions, and converting all 10,570 questions
should take under 60 s on a 2-core CPU. Prints the counts, the conversion time
and the round-trip rate, with a few of the questions that fail.

  python benchmarks/features_roundtrip.py [--data ../shared/data/squad/dev-v1.1.json]
"""

import argparse
import pathlib
import sys
import time

import numpy as np

from l2d_jax.data import features as features_lib
from l2d_jax.data import squad
from l2d_jax.data import tokenizer as tokenizer_lib
from l2d_jax.metrics.squad import normalize_answer

_DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared/data/squad/dev-v1.1.json"
_RATE_TARGET = 0.99
_SECONDS_TARGET = 60.0


def roundtrip_failures(examples, features) -> tuple[int, list[tuple[str, str, str]]]:
  """The number of answerable examples and (id, gold, decoded) for those that do not round-trip.

  An example round-trips when the first of its windows labelled with a span
  decodes to its first gold answer after normalization.
  """
  labelled_F = np.flatnonzero(features.start_positions_F > 0)
  examples_with_label, first_F = np.unique(features.example_index_F[labelled_F], return_index=True)
  first_window = dict(zip(examples_with_label.tolist(), labelled_F[first_F].tolist()))
  answerable, failures = 0, []
  for e, example in enumerate(examples):
    if not example.answers or example.is_impossible:
      continue
    answerable += 1
    f = first_window.get(e)
    decoded = "" if f is None else features_lib.decode_span(
        features, f, features.start_positions_F[f], features.end_positions_F[f], example.context)
    if f is None or normalize_answer(decoded) != normalize_answer(example.answers[0].text):
      failures.append((example.id, example.answers[0].text, decoded))
  return answerable, failures


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default=str(_DEFAULT_DATA), help="SQuAD JSON file")
  parser.add_argument("--tokenizer", default="all-MiniLM-L6-v2")
  parser.add_argument("--max-seq-len", type=int, default=384)
  parser.add_argument("--doc-stride", type=int, default=128)
  parser.add_argument("--max-query-len", type=int, default=64)
  args = parser.parse_args(argv)
  if not pathlib.Path(args.data).exists():
    print(f"data not found: {args.data}", file=sys.stderr)
    return 2

  data = squad.read_squad(args.data)
  print(data.skips.summary())
  tokenizer = tokenizer_lib.load_tokenizer(args.tokenizer)
  params = features_lib.FeatureParams(args.max_seq_len, args.doc_stride, args.max_query_len)
  begin = time.perf_counter()
  features = features_lib.make_features(data.examples, tokenizer, params)
  seconds = time.perf_counter() - begin
  answerable, failures = roundtrip_failures(data.examples, features)
  rate = 1 - len(failures) / answerable

  print(f"data: {args.data}")
  print(f"tokenizer: {args.tokenizer}  {params}")
  print(f"examples: {features.num_examples}  features: {features.num_features}")
  print(f"conversion: {seconds:.1f} s ({features.num_examples / seconds:.0f} questions/s; "
        f"target < {_SECONDS_TARGET:.0f} s: {'met' if seconds < _SECONDS_TARGET else 'MISSED'})")
  print(f"answer round trip: {answerable - len(failures)}/{answerable} answerable questions = "
        f"{100 * rate:.2f}% (target >= {100 * _RATE_TARGET:.0f}%: "
        f"{'met' if rate >= _RATE_TARGET else 'MISSED'})")
  for qid, gold, decoded in failures[:5]:
    print(f"  e.g. {qid}: gold {gold!r}, labelled span {decoded!r}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
