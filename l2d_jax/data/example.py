"""The one record every QA source is turned into, and how bad input is reported.

Every reader (SQuAD JSON, TFDS, TriviaQA, synthetic) yields `Example`s. Bad
input either raises `DataError`, which names the file, the record and the field,
or is skipped and counted in a `SkipReport` that the caller prints at the end:
nothing is dropped silently.
"""

import collections
import dataclasses

from l2d_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Answer:
  """A gold answer: its text and the character offset where it starts in the context."""
  text: str
  start: int

  @property
  def end(self) -> int:
    """Character offset one past the answer's last character."""
    return self.start + len(self.text)


@dataclasses.dataclass(frozen=True)
class Example:
  """One question over one context.

  `answers` keeps every gold annotation in source order (SQuAD dev sets have
  several per question; the human agent and the metric need all of them).
  `is_impossible` is True for SQuAD v2 questions with no answer in the context;
  their `answers` is empty. `no_evidence` marks TriviaQA questions whose
  (truncated) evidence holds no answer alias: kept for evaluation, never for
  span training.
  """
  id: str
  title: str
  context: str
  question: str
  answers: tuple[Answer, ...]
  is_impossible: bool = False
  no_evidence: bool = False


class DataError(UserError, ValueError):
  """Bad input that cannot be skipped: says where (file, article, question id, field)."""

  def __init__(self, message: str, *, file: str | None = None, article: str | None = None,
               qid: str | None = None, field: str | None = None):
    self.file, self.article, self.qid, self.field = file, article, qid, field
    where = ", ".join(f"{k} {v!r}" for k, v in
                      (("file", file), ("article", article), ("question id", qid), ("field", field))
                      if v is not None)
    super().__init__(f"{message} ({where})" if where else message)


@dataclasses.dataclass
class SkipReport:
  """Counts and examples of records skipped on purpose, to be reported at the end."""
  counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  samples: dict[str, list[str]] = dataclasses.field(default_factory=dict)
  max_samples: int = 5

  def skip(self, reason: str, where: str) -> None:
    """Records one skipped record: `reason` is the kind, `where` names the record."""
    self.counts[reason] += 1
    self.samples.setdefault(reason, [])
    if len(self.samples[reason]) < self.max_samples:
      self.samples[reason].append(where)

  @property
  def total(self) -> int:
    return sum(self.counts.values())

  def summary(self) -> str:
    """One line per reason, e.g. `skipped 3 records: answer_start mismatch (e.g. ...)`."""
    if not self.total:
      return "skipped 0 records"
    lines = [f"skipped {self.total} records:"]
    for reason, count in sorted(self.counts.items()):
      lines.append(f"  {count} x {reason} (e.g. {', '.join(self.samples[reason])})")
    return "\n".join(lines)
