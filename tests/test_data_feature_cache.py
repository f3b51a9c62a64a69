"""Tests for l2d_jax.data.feature_cache: hits equal fresh conversions, keys, corruption recovery."""

import dataclasses
import hashlib
import json
import logging

import numpy as np
import pytest
import tokenizers
from tokenizers import models, normalizers, pre_tokenizers, processors

from l2d_jax.data import feature_cache
from l2d_jax.data import features as F
from l2d_jax.data import tokenizer as tokenizer_lib
from l2d_jax.data.example import Answer, Example

_WORDS = "the cat sat on mat dog ran to park what where who did is".split()
PARAMS = F.FeatureParams(max_seq_len=16, doc_stride=2, max_query_len=4)


def _tiny(tmp_path, lowercase=True):
  """A small WordPiece tokenizer with BERT's template, saved and loaded as a bare tokenizer.json."""
  vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *_WORDS, ".", "?"])}
  backend = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
  backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
  backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  backend.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
      special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
  path = tmp_path / f"tokenizer-{lowercase}.json"
  backend.save(str(path))
  return tokenizer_lib.load_tokenizer(path)


def _examples():
  context = "the cat sat on the mat. the dog ran to the park. the cat ran to the dog."
  qas = [("q0", "what sat?", "the cat"), ("q1", "where did the dog run?", "the park"),
         ("q2", "who ran to the dog?", "the cat ran")]
  return [Example(qid, "t", context, q, (Answer(a, context.rindex(a)),)) for qid, q, a in qas]


def _assert_same(a: F.Features, b: F.Features):
  assert a.example_ids == b.example_ids and a.params == b.params
  for name, array in a.arrays().items():
    other = getattr(b, name)
    assert other.dtype == array.dtype, name
    np.testing.assert_array_equal(other, array, err_msg=name)


def _entries(cache_dir):
  return sorted(p.name for p in cache_dir.iterdir())


def test_miss_then_hit_returns_the_fresh_arrays_without_tokenizing(tmp_path, monkeypatch, caplog):
  tokenizer, examples, cache = _tiny(tmp_path), _examples(), tmp_path / "cache"
  fresh = F.make_features(examples, tokenizer, PARAMS)
  assert fresh.num_features > len(examples)  # several windows each
  with caplog.at_level(logging.INFO, logger=feature_cache.__name__):
    built = feature_cache.cached_features(examples, tokenizer, PARAMS, cache)
  assert "miss" in caplog.text
  _assert_same(fresh, built)
  (entry,) = _entries(cache)  # no staging directory left behind
  manifest = json.loads((cache / entry / feature_cache.MANIFEST).read_text())
  assert manifest["num_features"] == fresh.num_features and manifest["num_examples"] == 3
  assert manifest["params"] == dataclasses.asdict(PARAMS)
  assert manifest["tokenizer_fingerprint"] == tokenizer_lib.tokenizer_fingerprint(tokenizer)

  def no_tokenizing(*args, **kwargs):
    raise AssertionError("a cache hit must not tokenize")
  monkeypatch.setattr(F, "make_features", no_tokenizing)
  caplog.clear()
  with caplog.at_level(logging.INFO, logger=feature_cache.__name__):
    _assert_same(fresh, feature_cache.cached_features(examples, tokenizer, PARAMS, cache))
  assert "hit" in caplog.text


def test_changed_data_tokenizer_or_params_get_their_own_entries(tmp_path):
  tokenizer, examples, cache = _tiny(tmp_path), _examples(), tmp_path / "cache"
  feature_cache.cached_features(examples, tokenizer, PARAMS, cache)
  moved = dataclasses.replace(
      examples[0], answers=(Answer("the mat", examples[0].context.index("the mat")),))
  changed = [
      ([moved, *examples[1:]], tokenizer, PARAMS),
      ([dataclasses.replace(examples[0], question="who ran?"), *examples[1:]], tokenizer, PARAMS),
      (examples[::-1], tokenizer, PARAMS),
      (examples, _tiny(tmp_path, lowercase=False), PARAMS),
      (examples, tokenizer, dataclasses.replace(PARAMS, doc_stride=3)),
      (examples, tokenizer, dataclasses.replace(PARAMS, max_query_len=3)),
  ]
  for i, (exs, tok, params) in enumerate(changed):
    got = feature_cache.cached_features(exs, tok, params, cache)
    _assert_same(F.make_features(exs, tok, params), got)
    assert len(_entries(cache)) == i + 2
  # A title does not change features, so it shares the entry.
  retitled = [dataclasses.replace(e, title="other") for e in examples]
  feature_cache.cached_features(retitled, tokenizer, PARAMS, cache)
  assert len(_entries(cache)) == len(changed) + 1


@pytest.mark.parametrize("damage", ["flip_byte", "delete_array", "delete_manifest",
                                    "truncate_manifest", "foreign_manifest", "reshaped_array"])
def test_damaged_entry_is_logged_and_rebuilt(tmp_path, caplog, damage):
  tokenizer, examples, cache = _tiny(tmp_path), _examples(), tmp_path / "cache"
  fresh = feature_cache.cached_features(examples, tokenizer, PARAMS, cache)
  (entry,) = [cache / name for name in _entries(cache)]
  ids_file, manifest_file = entry / "input_ids_FxL.npy", entry / feature_cache.MANIFEST
  if damage == "flip_byte":
    raw = bytearray(ids_file.read_bytes())
    raw[-1] ^= 0xFF
    ids_file.write_bytes(bytes(raw))
  elif damage == "delete_array":
    (entry / "offsets_FxLx2.npy").unlink()
  elif damage == "delete_manifest":
    manifest_file.unlink()
  elif damage == "truncate_manifest":
    manifest_file.write_text(manifest_file.read_text()[:40])
  elif damage == "foreign_manifest":
    manifest = json.loads(manifest_file.read_text())
    manifest["data_fingerprint"] = "0" * 64
    manifest_file.write_text(json.dumps(manifest))
  else:  # a consistent-looking file of the wrong shape
    np.save(ids_file, fresh.input_ids_FxL[:1])
    manifest = json.loads(manifest_file.read_text())
    manifest["files"]["input_ids_FxL.npy"]["sha256"] = hashlib.sha256(
        ids_file.read_bytes()).hexdigest()
    manifest_file.write_text(json.dumps(manifest))
  with caplog.at_level(logging.WARNING, logger=feature_cache.__name__):
    rebuilt = feature_cache.cached_features(examples, tokenizer, PARAMS, cache)
  assert f"{entry.name} is unusable" in caplog.text and "rebuilding" in caplog.text
  _assert_same(fresh, rebuilt)
  caplog.clear()
  _assert_same(fresh, feature_cache.cached_features(examples, tokenizer, PARAMS, cache))
  assert "unusable" not in caplog.text  # the rebuilt entry is whole again


def test_examples_fingerprint_tracks_answers_flags_and_order():
  examples = _examples()
  base = feature_cache.examples_fingerprint(examples)
  assert base == feature_cache.examples_fingerprint(_examples())
  variants = [
      [dataclasses.replace(examples[0], is_impossible=True), *examples[1:]],
      [dataclasses.replace(examples[0], no_evidence=True), *examples[1:]],
      [dataclasses.replace(examples[0], answers=()), *examples[1:]],
      [dataclasses.replace(examples[0], id="other"), *examples[1:]],
      [dataclasses.replace(examples[0], context=examples[0].context + " "), *examples[1:]],
      examples[:2],
  ]
  assert len({base, *map(feature_cache.examples_fingerprint, variants)}) == len(variants) + 1


def test_minilm_entry_round_trips(tmp_path):
  tokenizer = tokenizer_lib.load_tokenizer("all-MiniLM-L6-v2")
  params = F.FeatureParams(max_seq_len=32, doc_stride=8, max_query_len=8)
  first = feature_cache.cached_features(_examples(), tokenizer, params, tmp_path)
  _assert_same(F.make_features(_examples(), tokenizer, params), first)
  _assert_same(first, feature_cache.cached_features(_examples(), tokenizer, params, tmp_path))
