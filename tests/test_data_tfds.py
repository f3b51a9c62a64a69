"""TFDS readers: squad/v1.1, squad/v2.0 and trivia_qa/rc built offline from manual files.

Each test writes small files in the official layout into a manual directory,
lets TFDS's own builders prepare them as array_record (no network, no
TensorFlow) and reads them back through `tfds.data_source`. The fixtures stand
in for the official files, so their checksums are registered in place of the
official ones (`register_manual_checksums`); everything else is TFDS's real
path: the manual file found by its registered name, its checksum checked, the
builder's parsing, array_record writing and random-access reading.
"""

import json
import pathlib
import sys
import tarfile

import pytest

# The optional extra l2d-jax[tfds] (`make test` installs it; test_optional_deps covers its absence).
tfds = pytest.importorskip("tensorflow_datasets", reason="the TFDS readers need the optional "
                           "extra: pip install 'l2d-jax[tfds]'")
from tensorflow_datasets.core.download import checksums

from l2d_jax.data import squad, tfds_source, triviaqa
from l2d_jax.data.example import Answer, DataError, Example

from test_data_triviaqa import EXPECTED_DEV, write_qa_file, write_rc_tree

EIFFEL = "The Eiffel Tower, built in 1889, stands in Paris — la Ville Lumière."
DANUBE = "The Danube flows through Vienna and Budapest."

SQUAD_V1_DEV = {"version": "1.1", "data": [
    {"title": "Eiffel_Tower", "paragraphs": [{"context": EIFFEL, "qas": [
        {"id": "e1", "question": "When was the tower built?",
         "answers": [{"text": "1889", "answer_start": 27},
                     {"text": "in 1889", "answer_start": 24}]},
        {"id": "e2", "question": "What is Paris called?",
         "answers": [{"text": "la Ville Lumière", "answer_start": 51}]},
    ]}]},
    {"title": "Danube", "paragraphs": [{"context": DANUBE, "qas": [
        {"id": "d1", "question": "Which cities does the Danube flow through?",
         "answers": [{"text": "Vienna and Budapest", "answer_start": 25}]},
    ]}]},
]}
EXPECTED_V1_DEV = [
    Example("d1", "Danube", DANUBE, "Which cities does the Danube flow through?",
            (Answer("Vienna and Budapest", 25),)),
    Example("e1", "Eiffel_Tower", EIFFEL, "When was the tower built?",
            (Answer("1889", 27), Answer("in 1889", 24))),
    Example("e2", "Eiffel_Tower", EIFFEL, "What is Paris called?",
            (Answer("la Ville Lumière", 51),)),
]
SQUAD_V1_TRAIN = {"version": "1.1", "data": [{"title": "Danube", "paragraphs": [
    {"context": DANUBE, "qas": [{"id": "t1", "question": "What flows through Vienna?",
                                 "answers": [{"text": "The Danube", "answer_start": 0}]}]}]}]}

SQUAD_V2_DEV = {"version": "v2.0", "data": [{"title": "Danube", "paragraphs": [
    {"context": DANUBE, "qas": [
        {"id": "v1", "question": "Which city comes first?", "is_impossible": False,
         "answers": [{"text": "Vienna", "answer_start": 25}]},
        {"id": "v2", "question": "Which sea does the Danube reach?", "is_impossible": True,
         "answers": [], "plausible_answers": [{"text": "Budapest", "answer_start": 36}]},
    ]}]}]}


def register_manual_checksums(monkeypatch, builder: str, manual_dir: pathlib.Path) -> None:
  """Registers the checksums of the fixtures in `manual_dir` in place of the official ones."""
  cls = tfds.builder_cls(builder)
  infos = dict(cls.url_infos)
  for url, info in cls.url_infos.items():
    if (manual_dir / info.filename).is_file():
      computed = checksums.compute_url_info(manual_dir / info.filename)
      infos[url] = checksums.UrlInfo(size=computed.size, checksum=computed.checksum,
                                     filename=info.filename)
  monkeypatch.setattr(cls, "url_infos", infos)


def write_json(path: pathlib.Path, document: dict) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")


@pytest.fixture
def squad_v1_manual(tmp_path, monkeypatch) -> pathlib.Path:
  """A manual directory with fixture train-v1.1.json and dev-v1.1.json, checksums registered."""
  manual = tmp_path / "manual"
  write_json(manual / "train-v1.1.json", SQUAD_V1_TRAIN)
  write_json(manual / "dev-v1.1.json", SQUAD_V1_DEV)
  register_manual_checksums(monkeypatch, "squad", manual)
  return manual


def by_id(examples: list[Example]) -> list[Example]:
  return sorted(examples, key=lambda e: e.id)


def test_manual_files_are_the_names_tfds_registers():
  for name, files in tfds_source.MANUAL_FILES.items():
    registered = {info.filename for info in tfds.builder_cls(name.split("/")[0]).url_infos.values()}
    assert set(files) <= registered, name


def test_squad_v1_builds_offline_as_array_record_and_reads_back(tmp_path, squad_v1_manual):
  data_dir = tmp_path / "data"
  examples, skips = tfds_source.read_tfds("squad/v1.1", "validation", data_dir=data_dir,
                                          manual_dir=squad_v1_manual)
  assert by_id(examples) == EXPECTED_V1_DEV
  assert skips.total == 0
  prepared = sorted(p.name for p in (data_dir / "squad" / "v1.1" / "3.0.0").iterdir())
  assert "squad-validation.array_record-00000-of-00001" in prepared
  assert not any("tfrecord" in p for p in prepared)
  assert "tensorflow" not in sys.modules
  # Once prepared, reading needs neither the manual files nor a download.
  train, _ = tfds_source.read_tfds("squad/v1.1", "train", data_dir=data_dir, download=False)
  assert train == [Example("t1", "Danube", DANUBE, "What flows through Vienna?",
                           (Answer("The Danube", 0),))]


def test_squad_v1_equals_the_json_reader(tmp_path, squad_v1_manual):
  examples, skips = tfds_source.read_tfds("squad/v1.1", "validation", data_dir=tmp_path / "data",
                                          manual_dir=squad_v1_manual)
  assert skips.total == 0 and len(examples) == 3
  assert by_id(examples) == by_id(squad.read_squad(squad_v1_manual / "dev-v1.1.json").examples)


def test_squad_v2_keeps_unanswerable_and_ignores_plausible_answers(tmp_path, monkeypatch):
  manual = tmp_path / "manual"
  write_json(manual / "train-v2.0.json", SQUAD_V2_DEV)
  write_json(manual / "dev-v2.0.json", SQUAD_V2_DEV)
  register_manual_checksums(monkeypatch, "squad", manual)
  examples, skips = tfds_source.read_tfds("squad/v2.0", "validation", data_dir=tmp_path / "data",
                                          manual_dir=manual)
  assert by_id(examples) == [
      Example("v1", "Danube", DANUBE, "Which city comes first?", (Answer("Vienna", 25),)),
      Example("v2", "Danube", DANUBE, "Which sea does the Danube reach?", (), is_impossible=True),
  ]
  assert skips.total == 0


def test_mismatched_offsets_and_empty_questions_are_counted_skips(tmp_path, monkeypatch):
  dev = json.loads(json.dumps(SQUAD_V1_DEV))
  qas = dev["data"][0]["paragraphs"][0]["qas"]
  qas[0]["answers"][1]["answer_start"] = 23  # "in 1889" is at 24: that answer is dropped
  qas[1]["answers"][0]["answer_start"] = 3  # e2's only answer: the question is dropped
  dev["data"][1]["paragraphs"][0]["qas"][0]["question"] = "  "
  manual = tmp_path / "manual"
  write_json(manual / "train-v1.1.json", SQUAD_V1_TRAIN)
  write_json(manual / "dev-v1.1.json", dev)
  register_manual_checksums(monkeypatch, "squad", manual)
  examples, skips = tfds_source.read_tfds("squad/v1.1", "validation", data_dir=tmp_path / "data",
                                          manual_dir=manual)
  assert examples == [Example("e1", "Eiffel_Tower", EIFFEL, "When was the tower built?",
                              (Answer("1889", 27),))]
  assert skips.counts == {squad.SKIP_ANSWER_MISMATCH: 2, squad.SKIP_NO_VALID_ANSWER: 1,
                          squad.SKIP_EMPTY_QUESTION: 1}
  assert sorted(skips.samples[squad.SKIP_ANSWER_MISMATCH]) == ["e1 answer 1", "e2 answer 0"]


def test_a_file_that_is_not_the_official_one_fails_its_checksum(tmp_path):
  manual = tmp_path / "manual"
  write_json(manual / "train-v1.1.json", SQUAD_V1_TRAIN)
  write_json(manual / "dev-v1.1.json", SQUAD_V1_DEV)
  with pytest.raises(DataError, match="checksum differs from the one TFDS registers") as error:
    tfds_source.read_tfds("squad/v1.1", "validation", data_dir=tmp_path / "data",
                          manual_dir=manual)
  assert pathlib.Path(error.value.file).parent == manual
  assert pathlib.Path(error.value.file).name in ("train-v1.1.json", "dev-v1.1.json")


def test_missing_manual_file_says_what_is_needed(tmp_path):
  manual = tmp_path / "manual"
  write_json(manual / "dev-v1.1.json", SQUAD_V1_DEV)
  with pytest.raises(FileNotFoundError, match=r"squad/v1.1 is built from train-v1.1.json, "
                                              r"dev-v1.1.json .*train-v1.1.json not found"):
    tfds_source.read_tfds("squad/v1.1", "validation", data_dir=tmp_path / "data",
                          manual_dir=manual)


def test_reading_an_unprepared_dataset_without_download_fails_clearly(tmp_path):
  with pytest.raises(FileNotFoundError, match="squad/v2.0 is not prepared under"):
    tfds_source.read_tfds("squad/v2.0", "validation", data_dir=tmp_path, download=False)
  with pytest.raises(ValueError, match="unsupported TFDS dataset"):
    tfds_source.read_tfds("squad/v3", "validation", data_dir=tmp_path)


@pytest.mark.parametrize("dev_bytes, message, field", [
    (b'{"version": "1.1", "data": [\n{"title": }]}', r"malformed JSON: .* line 2, column 11", None),
    (json.dumps(SQUAD_V1_DEV, ensure_ascii=False).replace("Danube flows", "Danube fl\udcffows")
     .encode("utf-8", "surrogateescape"), r"not UTF-8 at byte offset",
     "data[1].paragraphs[0].context"),
    (json.dumps(SQUAD_V1_DEV).replace('"question": "What is Paris called?", ', "").encode(),
     "missing field", "question"),
    (json.dumps(SQUAD_V1_DEV).replace('"d1"', '"e1"').encode(), "duplicate question id", None),
    (json.dumps(SQUAD_V2_DEV).encode(), "a SQuAD v2.0 file where squad/v1.1 needs v1.1", "version"),
])
def test_bad_manual_files_are_named_before_tfds_parses_them(tmp_path, monkeypatch, dev_bytes,
                                                            message, field):
  manual = tmp_path / "manual"
  write_json(manual / "train-v1.1.json", SQUAD_V1_TRAIN)
  (manual / "dev-v1.1.json").write_bytes(dev_bytes)
  register_manual_checksums(monkeypatch, "squad", manual)
  with pytest.raises(DataError, match=message) as error:
    tfds_source.read_tfds("squad/v1.1", "validation", data_dir=tmp_path / "data",
                          manual_dir=manual)
  assert error.value.file == str(manual / "dev-v1.1.json")
  if field is not None:
    assert error.value.field == field
  # Nothing was prepared: TFDS never saw the bad file.
  assert not (tmp_path / "data" / "squad" / "v1.1" / "3.0.0").exists()


def pack_rc_tarball(tree: pathlib.Path, manual: pathlib.Path, monkeypatch) -> None:
  """Packs an extracted rc tree as manual/triviaqa-rc.tar.gz (qa/ and evidence/ at its root)."""
  manual.mkdir()
  with tarfile.open(manual / "triviaqa-rc.tar.gz", "w:gz") as tar:
    for top in ("qa", "evidence"):
      tar.add(tree / top, arcname=top)
  register_manual_checksums(monkeypatch, "trivia_qa", manual)


def test_trivia_qa_rc_builds_offline_and_equals_the_official_layout_reader(tmp_path, monkeypatch):
  tree, manual = write_rc_tree(tmp_path / "tree"), tmp_path / "manual"
  pack_rc_tarball(tree, manual, monkeypatch)
  data_dir = tmp_path / "data"
  examples, skips = tfds_source.read_tfds("trivia_qa/rc", "validation", data_dir=data_dir,
                                          manual_dir=manual, max_evidence_chars=1000)
  assert by_id(examples) == by_id(EXPECTED_DEV)
  assert skips.counts == {triviaqa.SKIP_DUPLICATE_PAIR: 1}
  assert "tensorflow" not in sys.modules
  # TFDS's TensorFlow names are back as they were once the build is done.
  from tensorflow_datasets.core.download import extractor  # pylint: disable=g-import-not-at-top
  assert "LazyModule" in repr(extractor.tf)
  for split, max_chars in (("train", 1000), ("validation", 20)):
    via_tfds, _ = tfds_source.read_tfds("trivia_qa/rc", split, data_dir=data_dir, download=False,
                                        max_evidence_chars=max_chars)
    official, _ = triviaqa.read_triviaqa(tree, split, max_evidence_chars=max_chars)
    assert by_id(via_tfds) == by_id(official)
  with pytest.raises(ValueError, match="no public answers"):
    tfds_source.read_tfds("trivia_qa/rc", "test", data_dir=data_dir, download=False)


def test_trivia_qa_record_without_answer_is_an_error(tmp_path, monkeypatch):
  tree = write_rc_tree(tmp_path / "tree")
  records = json.loads((tree / "qa" / "wikipedia-dev.json").read_text())["Data"]
  del records[1]["Answer"]
  write_qa_file(tree / "qa" / "wikipedia-dev.json", records, "wikipedia", "dev")
  manual = tmp_path / "manual"
  pack_rc_tarball(tree, manual, monkeypatch)
  with pytest.raises(DataError, match="no answer") as error:
    tfds_source.read_tfds("trivia_qa/rc", "validation", data_dir=tmp_path / "data",
                          manual_dir=manual)
  assert (error.value.qid, error.value.field) == ("tc_2", "answer")


def test_trivia_qa_file_tfds_cannot_parse_is_a_data_error(tmp_path, monkeypatch):
  tree = write_rc_tree(tmp_path / "tree")
  records = json.loads((tree / "qa" / "web-train.json").read_text())["Data"]
  del records[0]["Question"]
  write_qa_file(tree / "qa" / "web-train.json", records, "web", "train")
  manual = tmp_path / "manual"
  pack_rc_tarball(tree, manual, monkeypatch)
  with pytest.raises(DataError, match="TFDS could not parse the trivia_qa/rc source files: "
                                      "KeyError") as error:
    tfds_source.read_tfds("trivia_qa/rc", "validation", data_dir=tmp_path / "data",
                          manual_dir=manual)
  assert (error.value.file, error.value.field) == (str(manual), "Question")


def test_real_squad_dev_through_tfds_equals_the_json_reader(tmp_path, monkeypatch, shared_squad):
  """The real dev-v1.1.json passes TFDS's official checksum; only the train file is a fixture."""
  manual = tmp_path / "manual"
  write_json(manual / "train-v1.1.json", SQUAD_V1_TRAIN)
  (manual / "dev-v1.1.json").symlink_to(shared_squad / "dev-v1.1.json")
  cls = tfds.builder_cls("squad")
  infos = dict(cls.url_infos)
  train_url = next(u for u, i in infos.items() if i.filename == "train-v1.1.json")
  computed = checksums.compute_url_info(manual / "train-v1.1.json")
  infos[train_url] = checksums.UrlInfo(size=computed.size, checksum=computed.checksum,
                                       filename="train-v1.1.json")
  monkeypatch.setattr(cls, "url_infos", infos)
  examples, skips = tfds_source.read_tfds("squad/v1.1", "validation", data_dir=tmp_path / "data",
                                          manual_dir=manual)
  assert len(examples) == 10570 and skips.total == 0
  assert by_id(examples) == by_id(squad.read_squad(shared_squad / "dev-v1.1.json").examples)
