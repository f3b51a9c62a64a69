"""Examples from the TFDS builders squad/v1.1, squad/v2.0 and trivia_qa/rc, without TensorFlow.

The datasets are prepared as array_record files and read back through
`tfds.data_source` (random access, no `tf.data`), so TensorFlow is neither
needed nor installed. Each record becomes an `Example`: SQuAD records keep their
answers and character offsets (v2.0 `plausible_answers` are ignored); a
trivia_qa/rc record (a question, its answer aliases and the text of its evidence
documents) becomes one SQuAD-style example per evidence document through the
same alias location as the official-layout reader, `l2d_jax.data.triviaqa`.

Where the data comes from (tensorflow-datasets 4.9.10):
- On a networked machine, `read_tfds(name, split)` lets TFDS download the
  official files from their source (rajpurkar.github.io, nlp.cs.washington.edu),
  check them against the checksums TFDS registers and prepare the dataset under
  `data_dir` (default `$TFDS_DATA_DIR` or `~/tensorflow_datasets`). TFDS's
  GCS copies are not asked for (`try_download_gcs=False`): the dataset is built
  here, from the official files, as array_record.
- Offline, put the official files, unmodified and under their official names,
  in one directory and pass it as `manual_dir` (TFDS's
  `DownloadConfig(manual_dir=...)`: its download manager takes a file from there
  when the name matches the one registered in the builder's checksums, and
  still checks its sha256). `MANUAL_FILES` lists the names. TFDS builds every
  split of a config at once, so squad/v1.1 needs both train-v1.1.json and
  dev-v1.1.json, even to read one split. trivia_qa/rc needs the 2.7 GB
  triviaqa-rc.tar.gz itself (not its extracted tree), which TFDS extracts under
  `data_dir/downloads/extracted`.
- Once prepared, `download=False` reads `data_dir` and touches nothing else.

TensorFlow-free preparation: squad builds without TensorFlow as it is. The
trivia_qa builder and TFDS's archive extractor use TensorFlow only as a file
layer (`tf.io.gfile.glob`, `tf.io.gfile.GFile`, `tf.errors.NotFoundError`,
`tf.compat.as_text`); while trivia_qa/rc is being prepared without TensorFlow
installed, those names are bound to plain local-file equivalents, and restored
afterwards. Everything else (record parsing, features, array_record writing) is
TFDS's own code. The trivia_qa builder parses qa files line by line and needs
their official indentation (`json.dumps(..., indent=4)`); it drops evidence
files it cannot find with a log line only, which this module cannot see.

Bad input: before TFDS parses manual SQuAD files, they are read with
`l2d_jax.data.squad.read_squad`, so malformed JSON, bytes that are not UTF-8,
missing fields and duplicate ids raise a `DataError` that says where (TFDS would
report them without the file name, and its v1.1 builder silently merges
duplicate ids). A file whose checksum is not the official one raises a
`DataError` naming it. Records are then checked as `read_squad` checks them:
answers whose offset does not match their text, empty contexts and questions
are counted skips; duplicate ids and unanswerable questions with answers raise.
"""

from collections.abc import Iterator, Sequence
import contextlib
import glob
import importlib
import importlib.util
import json
import logging
import os
import pathlib
import types
from typing import Any

from l2d_jax.data import squad
from l2d_jax.data.example import DataError, Example, SkipReport
from l2d_jax.data.triviaqa import (DEFAULT_MAX_EVIDENCE_CHARS, Evidence, EvidenceCut,
                                   answer_aliases, evidence_examples, no_evidence_summary,
                                   unique_pairs)
from l2d_jax.errors import MissingExtraError

try:  # an optional extra: only data.source=tfds needs it
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError
except ImportError as e:
  raise MissingExtraError("data.source=tfds", "tfds", e) from e

SQUAD_V1, SQUAD_V2, TRIVIA_QA_RC = "squad/v1.1", "squad/v2.0", "trivia_qa/rc"
# What `manual_dir` must hold for each builder: the file names TFDS registers.
MANUAL_FILES = {
    SQUAD_V1: ("train-v1.1.json", "dev-v1.1.json"),
    SQUAD_V2: ("train-v2.0.json", "dev-v2.0.json"),
    TRIVIA_QA_RC: ("triviaqa-rc.tar.gz",),
}
# Modules of TFDS that reach TensorFlow (as `tf`) only for file access while preparing trivia_qa.
_TF_FILE_LAYER_USERS = ("tensorflow_datasets.core.download.extractor",
                        "tensorflow_datasets.datasets.trivia_qa.trivia_qa_dataset_builder")
_READ_CHUNK = 1024

_log = logging.getLogger(__name__)


def read_tfds(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
              manual_dir: str | os.PathLike | None = None, download: bool = True,
              max_evidence_chars: int = DEFAULT_MAX_EVIDENCE_CHARS
              ) -> tuple[list[Example], SkipReport]:
  """The examples of one split ("train", "validation", or a TFDS slice like "train[:10%]").

  Prepares the dataset first where it is not prepared yet and `download`
  allows; see the module docstring for what a networked and an offline
  machine need. `max_evidence_chars` applies to trivia_qa/rc only.
  """
  if name not in MANUAL_FILES:
    raise ValueError(f"unsupported TFDS dataset {name!r} (supported: {sorted(MANUAL_FILES)})")
  if name == TRIVIA_QA_RC and split.startswith("test"):
    raise ValueError("trivia_qa/rc test has no public answers, so there is nothing to locate")
  source = open_source(name, split, data_dir=data_dir, manual_dir=manual_dir, download=download)
  where = f"TFDS {name} {split} in {source.dataset_info.data_dir}"
  skips = SkipReport()
  if name == TRIVIA_QA_RC:
    examples = _trivia_examples(_records(source), where, max_evidence_chars, skips)
  else:
    examples = _squad_examples(_records(source), where, skips)
  return examples, skips


def open_source(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
                manual_dir: str | os.PathLike | None = None,
                download: bool = True) -> Sequence[dict[str, Any]]:
  """The `tfds.data_source` of one split, prepared first (as array_record) where needed."""
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  if not builder.is_prepared():
    if not download:
      raise FileNotFoundError(f"{name} is not prepared under {builder.data_dir_root}; read it "
                              f"with download=True (and manual_dir= when offline) first")
    if manual_dir is not None:
      _check_manual_files(name, pathlib.Path(manual_dir))
  config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
  try:
    with _tensorflow_file_layer(name):
      return tfds.data_source(name, split=split, data_dir=data_dir, download=download,
                              builder_kwargs={"file_format": "array_record"},
                              download_and_prepare_kwargs={"download_config": config})
  except NonMatchingChecksumError as err:
    culprit = next((f for f in MANUAL_FILES[name] if f in str(err)), None)
    file = str(pathlib.Path(manual_dir) / culprit) if manual_dir and culprit else None
    raise DataError(f"not the official file: its checksum differs from the one TFDS registers "
                    f"for {name} ({err})", file=file) from None
  except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as err:
    # Only trivia_qa gets here: manual SQuAD files are checked before TFDS reads them.
    raise DataError(f"TFDS could not parse the {name} source files: {type(err).__name__}: {err}",
                    file=str(manual_dir or builder.data_dir_root),
                    field=str(err.args[0]) if isinstance(err, KeyError) else None) from err


def _check_manual_files(name: str, manual_dir: pathlib.Path) -> None:
  """Every official file is there, and SQuAD files read cleanly, before TFDS parses them."""
  missing = [f for f in MANUAL_FILES[name] if not (manual_dir / f).is_file()]
  if missing:
    raise FileNotFoundError(
        f"{name} is built from {', '.join(MANUAL_FILES[name])} (all splits at once); "
        f"{', '.join(missing)} not found in manual_dir {str(manual_dir)!r}")
  if name == TRIVIA_QA_RC:
    return
  wanted = name.removeprefix("squad/v")
  for filename in MANUAL_FILES[name]:
    data = squad.read_squad(manual_dir / filename)
    if data.version != wanted:
      raise DataError(f"a SQuAD v{data.version} file where {name} needs v{wanted}",
                      file=data.path, field="version")


@contextlib.contextmanager
def _tensorflow_file_layer(name: str) -> Iterator[None]:
  """Gives TFDS's `tf` file calls a local stand-in while trivia_qa/rc is prepared without TF."""
  if name != TRIVIA_QA_RC or importlib.util.find_spec("tensorflow") is not None:
    yield
    return
  modules = [importlib.import_module(m) for m in _TF_FILE_LAYER_USERS]
  saved = [module.tf for module in modules]
  for module in modules:
    module.tf = _LOCAL_FILE_LAYER
  try:
    yield
  finally:
    for module, tf in zip(modules, saved):
      module.tf = tf


def _open_local(path: str | os.PathLike, mode: str = "r"):
  """`tf.io.gfile.GFile` for local files: text is UTF-8, as in TensorFlow."""
  return open(path, mode, encoding=None if "b" in mode else "utf-8")


def _as_text(value: str | bytes) -> str:
  """`tf.compat.as_text`."""
  return value.decode("utf-8") if isinstance(value, bytes) else value


_LOCAL_FILE_LAYER = types.SimpleNamespace(
    io=types.SimpleNamespace(gfile=types.SimpleNamespace(glob=lambda p: sorted(glob.glob(p)),
                                                         GFile=_open_local)),
    errors=types.SimpleNamespace(NotFoundError=FileNotFoundError),
    compat=types.SimpleNamespace(as_text=_as_text),
)


def _records(source: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
  """The decoded records of a data source, in its order, read a chunk at a time."""
  for begin in range(0, len(source), _READ_CHUNK):
    yield from source.__getitems__(list(range(begin, min(begin + _READ_CHUNK, len(source)))))


def _text(value: bytes, where: str, qid: str | None, field: str) -> str:
  """A TFDS text feature (UTF-8 bytes) as `str`, or a `DataError` saying which record."""
  try:
    return value.decode("utf-8")
  except UnicodeDecodeError as err:
    raise DataError(f"bytes that are not UTF-8 at offset {err.start} ({err.reason})", file=where,
                    qid=qid, field=field) from None


def _squad_examples(records: Iterator[dict[str, Any]], where: str,
                    skips: SkipReport) -> list[Example]:
  """SQuAD records as examples, checked as `read_squad` checks a file (see the module docstring)."""
  examples: list[Example] = []
  seen: set[str] = set()
  for record in records:
    qid = _text(record["id"], where, None, "id")
    title = _text(record["title"], where, qid, "title")
    located = {"file": where, "article": title, "qid": qid}
    if qid in seen:
      raise DataError("duplicate question id", **located, field="id")
    seen.add(qid)
    texts, starts = record["answers"]["text"], record["answers"]["answer_start"]
    answers = [(_text(text, where, qid, f"answers.text[{index}]"), int(start))
               for index, (text, start) in enumerate(zip(texts, starts))]
    example = squad.checked_example(
        located, _text(record["context"], where, qid, "context"),
        _text(record["question"], where, qid, "question"), answers,
        is_impossible=bool(record.get("is_impossible", False)), skips=skips)
    if example is not None:
      examples.append(example)
  return examples


def _trivia_examples(records: Iterator[dict[str, Any]], where: str, max_evidence_chars: int,
                     skips: SkipReport) -> list[Example]:
  """trivia_qa/rc records as one example per (question, evidence document)."""
  examples: list[Example] = []
  cut = EvidenceCut(max_evidence_chars)
  for record in records:
    qid = _text(record["question_id"], where, None, "question_id")
    answer = record["answer"]
    value = _text(answer["value"], where, qid, "answer.value")
    raw_aliases = [_text(a, where, qid, "answer.aliases") for a in answer["aliases"]]
    if not raw_aliases and value == "<unk>":
      raise DataError("no answer (TFDS writes '<unk>' where the qa file has no Answer)",
                      file=where, qid=qid, field="answer")
    documents = _evidence(record["entity_pages"], "wiki_context", where, qid)
    documents += _evidence(record["search_results"], "search_context", where, qid)
    question = _text(record["question"], where, qid, "question")
    examples.extend(evidence_examples(qid, question, answer_aliases(value, raw_aliases), documents,
                                      max_evidence_chars=max_evidence_chars, skips=skips,
                                      cut=cut))
  examples = unique_pairs(examples, skips=skips, source=where)
  _log.info("%s: %s", where, no_evidence_summary(examples))
  cut.report(where)
  return examples


def _evidence(documents: dict[str, Any], text_key: str, where: str, qid: str) -> list[Evidence]:
  """The evidence documents of one record's `entity_pages` or `search_results`."""
  fields = zip(documents["filename"], documents["title"], documents[text_key])
  return [Evidence(_text(filename, where, qid, "filename"), _text(title, where, qid, "title"),
                   _text(text, where, qid, text_key))
          for filename, title, text in fields]
