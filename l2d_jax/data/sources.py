"""The three article-disjoint splits an experiment uses, from whichever source its config names.

Experts are fine-tuned on `expert_train`, the rejector is trained on
`rejector_train` (where the experts' outputs are honest, unseen-data outputs)
and everything is reported on `test`. Sources:

- `synthetic`: generated into the workdir with its tokenizer and splits file;
- `squad_json`: an official SQuAD file plus a splits file (titles per split);
- `tfds`: `squad/v1.1`, `squad/v2.0` or `trivia_qa/rc`; the TFDS train split is
  divided between experts and rejector by a hash of the article title (the
  question id for TriviaQA), and the validation split is the test set;
- `triviaqa`: the official rc layout, the same division of its train split.
"""

import dataclasses
import hashlib
import json
import logging
import pathlib

from l2d_jax.config import DataConfig
from l2d_jax.data import squad, synthetic, triviaqa, wordpiece
from l2d_jax.data.example import Example
from l2d_jax.errors import ConfigError

SPLITS = ("expert_train", "rejector_train", "test")


@dataclasses.dataclass(frozen=True)
class Splits:
  expert_train: list[Example]
  rejector_train: list[Example]
  test: list[Example]
  version: str                                 # metric semantics: "1.1" or "2.0"
  tokenizer_dir: pathlib.Path | None = None    # the synthetic data's own tokenizer

  def counts(self) -> dict[str, int]:
    return {name: len(getattr(self, name)) for name in SPLITS}


def load_splits(config: DataConfig, workdir: str | pathlib.Path) -> Splits:
  """The splits of `config`'s source (synthetic data is generated under `workdir/data`)."""
  if config.source == "synthetic":
    splits = _synthetic(config, pathlib.Path(workdir) / "data")
  elif config.source == "squad_json":
    if not config.path or not config.splits:
      raise ConfigError("data.source=squad_json needs data.path and data.splits")
    parts = {name: squad.read_split(config.path, config.splits, name) for name in SPLITS}
    for name, part in parts.items():
      if part.skips.total:
        logging.warning("%s %s: %s", config.path, name, part.skips.summary())
    splits = Splits(*(parts[name].examples for name in SPLITS), version=parts["test"].version)
  elif config.source == "tfds":
    splits = _tfds(config)
  elif config.source == "triviaqa":
    splits = _triviaqa(config)
  else:
    raise ConfigError(f"unknown data.source {config.source!r}: synthetic, squad_json, tfds, "
                     "triviaqa")
  if config.max_examples:
    splits = dataclasses.replace(splits, **{
        name: getattr(splits, name)[:config.max_examples] for name in SPLITS})
  for name in SPLITS:
    if not getattr(splits, name):
      raise ConfigError(f"split {name!r} of {config.source} data is empty")
  return splits


def _synthetic(config: DataConfig, out_dir: pathlib.Path) -> Splits:
  generator = synthetic.SyntheticConfig(
      seed=config.synthetic_seed, n_articles=config.synthetic_articles,
      annotators=config.synthetic_annotators)
  paths = synthetic.write_dataset(generator, out_dir)
  tokenizer_dir = out_dir / "tokenizer"
  if not (tokenizer_dir / "tokenizer.json").exists():
    wordpiece.build_tokenizer(json.loads(paths.data.read_text()), tokenizer_dir)
  parts = {name: squad.read_split(paths.data, paths.splits, name) for name in SPLITS}
  return Splits(*(parts[name].examples for name in SPLITS), version=generator.version,
                tokenizer_dir=tokenizer_dir)


def _half(key: str) -> str:
  """expert_train or rejector_train, by a stable hash of an article title or question id."""
  return SPLITS[hashlib.sha256(key.encode()).digest()[0] % 2]


def _divide(train: list[Example], key) -> dict[str, list[Example]]:
  parts = {"expert_train": [], "rejector_train": []}
  for example in train:
    parts[_half(key(example))].append(example)
  return parts


def _tfds(config: DataConfig) -> Splits:
  # Imported here: tensorflow-datasets is an optional extra, which only this source needs.
  from l2d_jax.data import tfds_source  # pylint: disable=import-outside-toplevel
  kwargs = dict(data_dir=config.tfds_data_dir or None, manual_dir=config.tfds_manual_dir or None,
                max_evidence_chars=config.max_evidence_chars)
  train, skips = tfds_source.read_tfds(config.tfds_name, "train", **kwargs)
  test, test_skips = tfds_source.read_tfds(config.tfds_name, "validation", **kwargs)
  for part, report in (("train", skips), ("validation", test_skips)):
    if report.total:
      logging.warning("%s %s: %s", config.tfds_name, part, report.summary())
  trivia = config.tfds_name.startswith("trivia_qa")
  parts = _divide(train, (lambda e: e.id.split("--")[0]) if trivia else (lambda e: e.title))
  version = "2.0" if config.tfds_name == "squad/v2.0" else "1.1"
  return Splits(parts["expert_train"], parts["rejector_train"], test, version=version)


def _triviaqa(config: DataConfig) -> Splits:
  train, skips = triviaqa.read_triviaqa(config.path, "train",
                                        max_evidence_chars=config.max_evidence_chars)
  test, test_skips = triviaqa.read_triviaqa(config.path, "dev",
                                            max_evidence_chars=config.max_evidence_chars)
  for part, report in (("train", skips), ("dev", test_skips)):
    if report.total:
      logging.warning("TriviaQA %s: %s", part, report.summary())
  parts = _divide(train, lambda e: e.id.split("--")[0])
  return Splits(parts["expert_train"], parts["rejector_train"], test, version="1.1")
