"""TriviaQA reading comprehension as SQuAD-style examples, one per (question, document).

TriviaQA gives each question answer aliases and evidence documents (Wikipedia
entity pages, web search results) but no answer offsets. Extractive models need
spans, so each (question, evidence document) pair becomes one `Example` whose
context is the document's whole text and whose answers are every place an alias
occurs in it, at exact character offsets. Long documents are read as
extractive-QA systems read them: `data.features` cuts every context into
overlapping token windows (`max_seq_len`, `doc_stride`) over its whole length,
so an answer anywhere in the evidence is in some window. Pairs whose evidence
holds no alias are kept with `no_evidence=True` (an agent can still be scored on
them against the aliases, but they give no span to train on) and counted.

The official evaluation scores a prediction against the aliases whatever part
of the document a reader kept, so cutting documents turns the answers beyond
the cut into misses for every agent. `max_evidence_chars` > 0 still keeps only
the first characters of each document, to bound the windows of a very large
corpus; what that cuts away (answer occurrences, and pairs left with none) is
counted in an `EvidenceCut` and logged as a warning.

Two sources share this logic: `read_triviaqa` below reads the official
`triviaqa-rc` layout, and `l2d_jax.data.tfds_source` reads TFDS `trivia_qa/rc`;
both call `evidence_examples` and `unique_pairs`, so the same data gives the same
examples either way.

Alias location, the choices made:
- the aliases are the answer's `Value` and `Aliases`, stripped, deduplicated
  without regard to case, empty ones dropped;
- matching ignores case and needs a word boundary on both sides: no word
  character (letter, digit, underscore) right before or after the match, which,
  unlike `\\b`, also works for aliases that begin or end with punctuation
  ("U.S.", "C++");
- all occurrences are kept, leftmost first; where aliases overlap the longest
  match at the leftmost position wins ("New York City" over "New York") and
  matches overlapping a kept one are dropped. The answer text is the context's
  own spelling, so `context[start:end] == text` always holds.

Truncation keeps at most `max_evidence_chars` characters and never ends inside a
word (it cuts back to the last whitespace, unless the first word alone is
longer). Aliases are located in the whole document and those that end within
the kept text are kept, so an alias is never matched on half a word.
"""

from collections.abc import Iterable, Sequence
import dataclasses
import logging
import os
import pathlib
import re
from typing import Any

from l2d_jax.data.example import Answer, DataError, Example, SkipReport
from l2d_jax.data.squad import SKIP_EMPTY_CONTEXT, SKIP_EMPTY_QUESTION, load_json

# 0: every document whole (token windows over all of it); N > 0 keeps its first N characters.
DEFAULT_MAX_EVIDENCE_CHARS = 0
DOMAINS = ("wikipedia", "web")
# Split name -> the word in the official qa file names. The test split has no
# public answers, so there is nothing to locate.
SPLIT_FILE_WORDS = {"train": "train", "dev": "dev", "validation": "dev"}
ID_SEPARATOR = "--"

SKIP_NO_DOCUMENTS = "question without evidence documents"
SKIP_DUPLICATE_PAIR = "(question, document) pair already read from another qa file"

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Evidence:
  """One evidence document of a question: its file name (unique per source), title and text."""
  filename: str
  title: str
  text: str


def answer_aliases(value: str, aliases: Iterable[str]) -> tuple[str, ...]:
  """The answer strings to look for: `value` then `aliases`, stripped, without case duplicates."""
  seen, kept = set(), []
  for alias in (value, *aliases):
    alias = alias.strip()
    if alias and alias.casefold() not in seen:
      seen.add(alias.casefold())
      kept.append(alias)
  return tuple(kept)


@dataclasses.dataclass
class EvidenceCut:
  """What `max_evidence_chars` cut away: per (question, document) pair, answers found and kept.

  Keyed by pair id, so a pair read twice (from the Wikipedia and the web qa
  files) counts once.
  """
  max_chars: int
  answers_by_pair: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)

  def record(self, pair_id: str, found: int, kept: int) -> None:
    """Pair `pair_id` has `found` alias occurrences in its whole document, `kept` in its context."""
    self.answers_by_pair[pair_id] = (found, kept)

  @property
  def answers_cut(self) -> int:
    return sum(found - kept for found, kept in self.answers_by_pair.values())

  @property
  def pairs_emptied(self) -> int:
    """Pairs whose document holds an answer and whose kept context holds none."""
    return sum(1 for found, kept in self.answers_by_pair.values() if found and not kept)

  def summary(self) -> str:
    """One line: the cut, how many answer occurrences it removed and how many pairs it emptied."""
    if self.max_chars <= 0:
      return "every evidence document read whole (max_evidence_chars=0): no answer cut"
    found = sum(found for found, _ in self.answers_by_pair.values())
    with_answers = sum(1 for found, _ in self.answers_by_pair.values() if found)
    return (f"max_evidence_chars={self.max_chars} cut {self.answers_cut} of {found} answer "
            f"occurrences; {self.pairs_emptied} of {with_answers} (question, document) pairs "
            f"with an answer in their document have none left (kept with no_evidence=True)")

  def report(self, where: str) -> None:
    """Logs the summary: a warning when answers were cut, else at INFO."""
    _log.log(logging.WARNING if self.answers_cut else logging.INFO, "%s: %s", where,
             self.summary())


def truncate_evidence(text: str, max_chars: int) -> str:
  """The longest prefix of `text` of at most `max_chars` characters that ends on a word end.

  `max_chars` 0 keeps the whole text.
  """
  if max_chars < 0:
    raise ValueError(f"max_evidence_chars must be 0 (whole documents) or positive, got "
                     f"{max_chars}")
  if not max_chars or len(text) <= max_chars:
    return text
  prefix = text[:max_chars]
  if not text[max_chars].isspace():
    cut = max(prefix.rfind(" "), prefix.rfind("\n"), prefix.rfind("\t"))
    prefix = prefix[:cut] if cut > 0 else prefix
  return prefix.rstrip()


def locate_aliases(context: str, aliases: Sequence[str]) -> tuple[Answer, ...]:
  """Every non-overlapping, case-insensitive, whole-word occurrence of an alias, leftmost first."""
  if not aliases:
    return ()
  # Longest first, so that at a given position the regex takes the longest alias.
  alternatives = "|".join(re.escape(a) for a in sorted(aliases, key=len, reverse=True))
  pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
  return tuple(Answer(m.group(), m.start()) for m in pattern.finditer(context))


def evidence_examples(qid: str, question: str, aliases: Sequence[str],
                      documents: Iterable[Evidence], *, max_evidence_chars: int,
                      skips: SkipReport, cut: EvidenceCut | None = None) -> list[Example]:
  """The examples of one question: one per evidence document, aliases located in its text.

  Documents whose (stripped) text is empty, and questions that are empty or
  have no documents, are counted in `skips`; the answers `max_evidence_chars`
  cuts away are recorded in `cut`.
  """
  question, documents = question.strip(), list(documents)
  if not question:
    skips.skip(SKIP_EMPTY_QUESTION, qid)
    return []
  if not documents:
    skips.skip(SKIP_NO_DOCUMENTS, qid)
    return []
  examples = []
  for document in documents:
    pair_id = f"{qid}{ID_SEPARATOR}{document.filename}"
    text = document.text.strip()
    context = truncate_evidence(text, max_evidence_chars)
    if not context:
      skips.skip(SKIP_EMPTY_CONTEXT, pair_id)
      continue
    found = locate_aliases(text, aliases)
    answers = tuple(answer for answer in found if answer.end <= len(context))
    if cut is not None:
      cut.record(pair_id, len(found), len(answers))
    examples.append(Example(pair_id, document.title.strip(), context, question, answers,
                            no_evidence=not answers))
  return examples


def unique_pairs(examples: Iterable[Example], *, skips: SkipReport, source: str) -> list[Example]:
  """Drops repeats of a (question, document) pair, counted; a repeat that differs is an error.

  The Wikipedia and web qa files of a split share many questions and their
  entity pages, so reading both yields the same pair twice.
  """
  kept: dict[str, Example] = {}
  for example in examples:
    first = kept.setdefault(example.id, example)
    if first is example:
      continue
    if first != example:
      raise DataError("the same (question, document) pair appears twice with different content",
                      file=source, qid=example.id)
    skips.skip(SKIP_DUPLICATE_PAIR, example.id)
  return list(kept.values())


def no_evidence_summary(examples: Sequence[Example]) -> str:
  """One line: how many (question, document) pairs hold no answer alias (kept, flagged)."""
  count = sum(e.no_evidence for e in examples)
  return (f"{count} of {len(examples)} (question, document) pairs hold no answer alias in their "
          f"evidence (kept with no_evidence=True)")


def read_triviaqa(root: str | os.PathLike, split: str, *, domains: Sequence[str] = DOMAINS,
                  max_evidence_chars: int = DEFAULT_MAX_EVIDENCE_CHARS
                  ) -> tuple[list[Example], SkipReport]:
  """Reads one split of the official `triviaqa-rc` layout as (question, document) examples.

  `root` holds `qa/{domain}-{split}.json` and `evidence/{wikipedia,web}/`
  (the extracted triviaqa-rc tarball); `split` is "train" or "dev"
  ("validation" is an alias). Entity pages are read from `evidence/wikipedia`,
  search results from `evidence/web`. Example ids are `QuestionId--Filename`.
  Missing files, malformed JSON and missing fields raise a `DataError`. What
  `max_evidence_chars` > 0 cuts away is logged (`EvidenceCut.report`).
  """
  if split not in SPLIT_FILE_WORDS:
    raise ValueError(f"TriviaQA split must be one of {sorted(SPLIT_FILE_WORDS)}, got {split!r} "
                     f"(the test split has no public answers)")
  unknown = sorted(set(domains) - set(DOMAINS))
  if unknown:
    raise ValueError(f"unknown TriviaQA domains {unknown} (known: {DOMAINS})")
  root = pathlib.Path(root)
  skips = SkipReport()
  cut = EvidenceCut(max_evidence_chars)
  examples: list[Example] = []
  for domain in domains:
    qa_path = root / "qa" / f"{domain}-{SPLIT_FILE_WORDS[split]}.json"
    if not qa_path.is_file():
      raise DataError(f"TriviaQA qa file not found (expected the extracted triviaqa-rc layout "
                      f"under {root})", file=str(qa_path))
    examples.extend(_qa_file_examples(qa_path, root / "evidence", max_evidence_chars, skips, cut))
  examples = unique_pairs(examples, skips=skips, source=str(root / "qa"))
  _log.info("TriviaQA %s: %s", split, no_evidence_summary(examples))
  cut.report(f"TriviaQA {split}")
  return examples, skips


def _qa_file_examples(qa_path: pathlib.Path, evidence_dir: pathlib.Path, max_evidence_chars: int,
                      skips: SkipReport, cut: EvidenceCut) -> list[Example]:
  """The examples of every question of one qa file."""
  file = str(qa_path)
  data = load_json(qa_path)
  if not isinstance(data, dict) or not isinstance(data.get("Data"), list):
    raise DataError("expected a JSON object with a list under 'Data'", file=file, field="Data")
  examples = []
  for index, record in enumerate(data["Data"]):
    if not isinstance(record, dict):
      raise DataError(f"expected a JSON object, got {type(record).__name__}", file=file,
                      field=f"Data[{index}]")
    qid = _field(record, "QuestionId", str, file=file, qid=None, prefix=f"Data[{index}].")
    answer = _field(record, "Answer", dict, file=file, qid=qid)
    aliases = _field(answer, "Aliases", list, file=file, qid=qid, prefix="Answer.")
    if not all(isinstance(a, str) for a in aliases):
      raise DataError("expected a list of strings", file=file, qid=qid, field="Answer.Aliases")
    aliases = answer_aliases(_field(answer, "Value", str, file=file, qid=qid, prefix="Answer."),
                             aliases)
    documents = [
        *_documents(record, "EntityPages", evidence_dir / "wikipedia", file, qid),
        *_documents(record, "SearchResults", evidence_dir / "web", file, qid),
    ]
    question = _field(record, "Question", str, file=file, qid=qid)
    examples.extend(evidence_examples(qid, question, aliases, documents,
                                      max_evidence_chars=max_evidence_chars, skips=skips,
                                      cut=cut))
  return examples


def _documents(record: dict, key: str, directory: pathlib.Path, file: str,
               qid: str) -> list[Evidence]:
  """The evidence documents listed under `key` (absent: none), their text read from `directory`."""
  entries = record.get(key, [])
  if not isinstance(entries, list):
    raise DataError(f"expected a list, got {type(entries).__name__}", file=file, qid=qid, field=key)
  documents = []
  for index, entry in enumerate(entries):
    prefix = f"{key}[{index}]."
    filename = _field(entry, "Filename", str, file=file, qid=qid, prefix=prefix)
    title = _field(entry, "Title", str, file=file, qid=qid, prefix=prefix)
    path = directory / filename
    try:
      raw = path.read_bytes()
    except FileNotFoundError:
      raise DataError(f"evidence file {str(path)!r} not found", file=file, qid=qid,
                      field=prefix + "Filename") from None
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
      raise DataError(f"evidence file {str(path)!r} has bytes that are not UTF-8 at byte offset "
                      f"{err.start} ({err.reason})", file=file, qid=qid,
                      field=prefix + "Filename") from None
    documents.append(Evidence(filename.strip(), title, text))
  return documents


def _field(record: Any, key: str, kind: type, *, file: str, qid: str | None,
           prefix: str = "") -> Any:
  """`record[key]`, which must exist and be of type `kind`, or a `DataError` naming it."""
  if not isinstance(record, dict):
    raise DataError(f"expected a JSON object holding {key!r}, got {type(record).__name__}",
                    file=file, qid=qid, field=prefix + key)
  if key not in record:
    raise DataError("missing field", file=file, qid=qid, field=prefix + key)
  if not isinstance(record[key], kind):
    raise DataError(f"expected {kind.__name__}, got {type(record[key]).__name__}", file=file,
                    qid=qid, field=prefix + key)
  return record[key]
