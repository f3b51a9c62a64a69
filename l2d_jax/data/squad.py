"""Reads and writes the official SQuAD v1.1 / v2.0 JSON layout as `Example`s.

Every SQuAD-format file in the project (the real dev sets, the synthetic corpus,
prediction and split files) goes through here, so that bad input is caught in
one place: malformed JSON, bytes that are not UTF-8, missing fields, fields of
the wrong type and duplicate question ids raise a `DataError` that says where,
also in a question that would otherwise be skipped; empty contexts or
questions, and an `answer_start` that does not match its answer text, are
skipped and counted in `SquadData.skips` (the latter raise with `strict=True`).
"""

from collections.abc import Collection, Iterable, Sequence
import dataclasses
import json
import os
import pathlib
import re
from typing import Any

from l2d_jax.data.example import Answer, DataError, Example, SkipReport

VERSIONS = ("1.1", "2.0")

SKIP_ANSWER_MISMATCH = "answer text empty or not found at answer_start"
SKIP_NO_VALID_ANSWER = "answerable question without a valid answer"
SKIP_EMPTY_CONTEXT = "empty context"
SKIP_EMPTY_QUESTION = "empty question"

# What `surrogateescape` turns an undecodable byte into.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


@dataclasses.dataclass(frozen=True)
class SquadData:
  """The examples of one SQuAD file, its format version and what was skipped reading it."""
  examples: list[Example]
  version: str
  skips: SkipReport
  path: str


def load_json(path: str | os.PathLike) -> Any:
  """Parses a JSON file; bad bytes or syntax raise a `DataError` that says where.

  Malformed JSON is reported by line and column; bytes that are not UTF-8 by
  byte offset, with the article and question id around them when the rest of
  the file parses.
  """
  path = str(path)
  raw = pathlib.Path(path).read_bytes()
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as err:
    raise _not_utf8_error(path, raw, err) from None
  try:
    return json.loads(text)
  except json.JSONDecodeError as err:
    raise DataError(f"malformed JSON: {err.msg} at line {err.lineno}, column {err.colno}",
                    file=path) from None


def read_squad(path: str | os.PathLike, *, articles: Collection[str] | None = None,
               strict: bool = False) -> SquadData:
  """Reads a SQuAD v1.1 or v2.0 file (optionally only the articles titled in `articles`).

  The version comes from the file's "version" field ("1.1", "v2.0"), or, where
  that is absent, from the presence of `is_impossible`. With `strict`, answers
  whose `answer_start` does not match their text are an error, not a skip.
  """
  path = str(path)
  root = load_json(path)
  if not isinstance(root, dict):
    raise DataError(f"expected a JSON object at the top, got {type(root).__name__}", file=path)
  wanted = None if articles is None else set(articles)
  reader = _Reader(path, strict)
  for index, article in enumerate(_get(root, "data", list, file=path)):
    title = _get(article, "title", str, file=path, article=f"#{index}")
    if wanted is None or title in wanted:
      reader.read_article(article, title)
  if wanted is not None and (missing := sorted(wanted - reader.titles)):
    raise DataError(f"articles not in the file: {missing}", file=path, field="title")
  return SquadData(reader.examples, _version(root, path, reader), reader.skips, path)


def read_split(path: str | os.PathLike, splits_path: str | os.PathLike,
               split_name: str) -> SquadData:
  """Reads the articles of one split of a SQuAD file, as listed in a splits file.

  The splits file (like ../shared/data/squad/splits.json) maps a data file's
  basename to split names, each a list of article titles.
  """
  splits_path, name = str(splits_path), os.path.basename(path)
  splits = load_json(splits_path)
  if not isinstance(splits, dict) or not isinstance(splits.get(name), dict):
    known = sorted(k for k in splits if not k.startswith("_")) if isinstance(splits, dict) else []
    raise DataError(f"no splits for data file {name!r} (the splits file has {known})",
                    file=splits_path, field=name)
  if split_name not in splits[name]:
    raise DataError(f"unknown split {split_name!r} (known: {sorted(splits[name])})",
                    file=splits_path, field=f"{name}.{split_name}")
  titles = splits[name][split_name]
  if not isinstance(titles, list) or not all(isinstance(t, str) for t in titles):
    raise DataError("a split must be a list of article titles", file=splits_path,
                    field=f"{name}.{split_name}")
  return read_squad(path, articles=titles)


def write_squad(path: str | os.PathLike, examples: Iterable[Example], version: str) -> None:
  """Writes examples in the official layout, in order (consecutive runs share an article/paragraph).

  `read_squad` reads the file back into the same examples. A TriviaQA-style
  `no_evidence` flag is kept as an extra question field.
  """
  if version not in VERSIONS:
    raise ValueError(f"SQuAD version must be one of {VERSIONS}, got {version!r}")
  data: list[dict[str, Any]] = []
  for example in examples:
    if version == "1.1" and example.is_impossible:
      raise ValueError(f"question {example.id!r} is unanswerable, which SQuAD v1.1 cannot hold")
    if not data or data[-1]["title"] != example.title:
      data.append({"title": example.title, "paragraphs": []})
    paragraphs = data[-1]["paragraphs"]
    if not paragraphs or paragraphs[-1]["context"] != example.context:
      paragraphs.append({"context": example.context, "qas": []})
    qa: dict[str, Any] = {
        "answers": [{"answer_start": a.start, "text": a.text} for a in example.answers],
        "question": example.question,
        "id": example.id,
    }
    if version == "2.0":
      qa["is_impossible"] = example.is_impossible
    if example.no_evidence:
      qa["no_evidence"] = True
    paragraphs[-1]["qas"].append(qa)
  document = {"version": "v2.0" if version == "2.0" else "1.1", "data": data}
  pathlib.Path(path).write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")


class _Reader:
  """Turns articles into examples, keeping the skip counts and the ids seen so far."""

  def __init__(self, path: str, strict: bool):
    self.path, self.strict = path, strict
    self.examples: list[Example] = []
    self.skips = SkipReport()
    self.titles: set[str] = set()
    self.seen: dict[str, str] = {}  # question id -> where it was first seen
    self.has_is_impossible = False

  def read_article(self, article: dict, title: str) -> None:
    """Adds the examples of one article."""
    self.titles.add(title)
    where = {"file": self.path, "article": title}
    for p_index, paragraph in enumerate(_get(article, "paragraphs", list, **where)):
      context = _get(paragraph, "context", str, **where, field_prefix=f"paragraphs[{p_index}].")
      qas = _get(paragraph, "qas", list, **where, field_prefix=f"paragraphs[{p_index}].")
      for q_index, qa in enumerate(qas):
        self._read_question(qa, title, f"paragraphs[{p_index}].qas[{q_index}].", context)

  def _read_question(self, qa: dict, title: str, position: str, context: str) -> None:
    """Adds one question (`position` is e.g. "paragraphs[2].qas[0].") or counts its skip."""
    where = {"file": self.path, "article": title}
    qid = _get(qa, "id", str, **where, field_prefix=position)
    where["qid"] = qid
    place = f"article {title!r} at {position.rstrip('.')}"
    if qid in self.seen:
      raise DataError(f"duplicate question id: first in {self.seen[qid]}, again in {place}",
                      **where)
    self.seen[qid] = place
    question = _get(qa, "question", str, **where)
    raw_answers = _get(qa, "answers", list, **where)
    self.has_is_impossible |= "is_impossible" in qa
    is_impossible = _get(qa, "is_impossible", bool, **where) if "is_impossible" in qa else False
    no_evidence = _get(qa, "no_evidence", bool, **where) if "no_evidence" in qa else False
    answers = [(_get(raw, "text", str, **where, field_prefix=f"answers[{index}]."),
                _get(raw, "answer_start", int, **where, field_prefix=f"answers[{index}]."))
               for index, raw in enumerate(raw_answers)]
    example = checked_example(where, context, question, answers, is_impossible=is_impossible,
                              no_evidence=no_evidence, skips=self.skips, strict=self.strict)
    if example is not None:
      self.examples.append(example)


def checked_example(where: dict[str, str], context: str, question: str,
                    answers: Sequence[tuple[str, int]], *, is_impossible: bool,
                    skips: SkipReport, no_evidence: bool = False,
                    strict: bool = False) -> Example | None:
  """One question as an `Example` after the checks every SQuAD-layout reader applies.

  `where` names the record (`file`, `article`, `qid`) and `answers` are its
  (text, answer_start) pairs, already parsed (a malformed field is an error
  before any skip). An unanswerable question with answers raises a
  `DataError`. An empty context or question gives None, counted in `skips`; so
  does an answerable question left without a valid answer; each answer whose
  text is not found at its offset is dropped and counted. With `strict=True`
  the answer checks raise instead.
  """
  qid, title = where["qid"], where["article"]
  if is_impossible and answers:
    raise DataError("an unanswerable question has answers", **where, field="answers")
  if not context.strip():
    skips.skip(SKIP_EMPTY_CONTEXT, f"{qid} in {title!r}")
    return None
  if not question.strip():
    skips.skip(SKIP_EMPTY_QUESTION, f"{qid} in {title!r}")
    return None
  valid = []
  for index, (text, start) in enumerate(answers):
    if text and 0 <= start and context[start:start + len(text)] == text:
      valid.append(Answer(text, start))
      continue
    if strict:
      found = context[max(start, 0):max(start, 0) + len(text)]
      raise DataError(f"answer_start {start} does not match answer text {text!r} "
                      f"(the context there reads {found!r})", **where, field=f"answers[{index}]")
    skips.skip(SKIP_ANSWER_MISMATCH, f"{qid} answer {index}")
  if not is_impossible and not valid:
    if strict:
      raise DataError("answerable question without a valid answer", **where, field="answers")
    skips.skip(SKIP_NO_VALID_ANSWER, f"{qid} in {title!r}")
    return None
  return Example(qid, title, context, question, tuple(valid), is_impossible=is_impossible,
                 no_evidence=no_evidence)


def _get(record: Any, key: str, kind: type, *, file: str, article: str | None = None,
         qid: str | None = None, field_prefix: str = "") -> Any:
  """`record[key]`, which must exist and be of type `kind`, or a `DataError` naming it."""
  where = {"file": file, "article": article, "qid": qid, "field": field_prefix + key}
  if not isinstance(record, dict):
    raise DataError(f"expected a JSON object holding {key!r}, got {type(record).__name__}",
                    **where)
  if key not in record:
    raise DataError("missing field", **where)
  value = record[key]
  if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
    raise DataError(f"expected {kind.__name__}, got {type(value).__name__}", **where)
  return value


def _version(root: dict, path: str, reader: _Reader) -> str:
  """The file's SQuAD version: its "version" field, else "2.0" if any question has is_impossible."""
  if "version" not in root:
    return "2.0" if reader.has_is_impossible else "1.1"
  version = root["version"]
  if not isinstance(version, str) or version.removeprefix("v") not in VERSIONS:
    raise DataError(f"unknown SQuAD version {version!r} (expected 1.1 or v2.0)", file=path,
                    field="version")
  version = version.removeprefix("v")
  if version == "1.1" and any(e.is_impossible for e in reader.examples):
    raise DataError("unanswerable questions in a SQuAD v1.1 file", file=path,
                    field="is_impossible")
  return version


def _not_utf8_error(path: str, raw: bytes, err: UnicodeDecodeError) -> DataError:
  """A `DataError` for undecodable bytes, naming the article and question around them if found."""
  message = f"bytes that are not UTF-8 at byte offset {err.start} ({err.reason})"
  try:
    root = json.loads(raw.decode("utf-8", errors="surrogateescape"))
  except json.JSONDecodeError:
    return DataError(message, file=path)
  trail = _find_escaped(root, [])
  if trail is None:
    return DataError(message, file=path)
  article = qid = None
  node = root
  for key in trail:
    if isinstance(node, dict):
      article = node["title"] if isinstance(node.get("title"), str) else article
      qid = node["id"] if isinstance(node.get("id"), str) else qid
      if qid is None and isinstance(node.get("qas"), list) and node["qas"]:
        first = node["qas"][0]  # a bad byte in a context: name its paragraph's first question
        qid = first["id"] if isinstance(first, dict) and isinstance(first.get("id"), str) else None
    node = node[key]
  field = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in trail).lstrip(".")
  return DataError(message, file=path, article=article, qid=qid, field=field)


def _find_escaped(node: Any, trail: list) -> list | None:
  """The key path to the first string (or key) that holds an undecodable byte, or None."""
  if isinstance(node, str):
    return trail if _ESCAPED_BYTE.search(node) else None
  if isinstance(node, dict):
    items = node.items()
  else:
    items = enumerate(node) if isinstance(node, list) else ()
  for key, value in items:
    if isinstance(key, str) and _ESCAPED_BYTE.search(key):
      return trail + [key]
    if (found := _find_escaped(value, trail + [key])) is not None:
      return found
  return None
