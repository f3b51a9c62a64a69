"""Tests for l2d_jax.data.tokenizer: the ways a tokenizer is named, and its fingerprint."""

import shutil

import pytest
import tokenizers
from tokenizers import models, normalizers, pre_tokenizers

from l2d_jax.data import tokenizer as tokenizer_lib
from l2d_jax.models import hub


def _save_tiny(path, lowercase=True, extra_word=None):
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world"]
  vocab += [extra_word] if extra_word else []
  backend = tokenizers.Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)},
                                                  unk_token="[UNK]"))
  backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
  backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  backend.save(str(path))
  return path


def test_minilm_loads_by_name_directory_and_bare_file_alike(tmp_path):
  model_dir = hub.resolve_model_dir("all-MiniLM-L6-v2")
  bare_dir = tmp_path / "bare"
  bare_dir.mkdir()
  shutil.copy(model_dir / "tokenizer.json", bare_dir / "tokenizer.json")
  loaded = [tokenizer_lib.load_tokenizer("all-MiniLM-L6-v2"),
            tokenizer_lib.load_tokenizer(model_dir),
            tokenizer_lib.load_tokenizer(bare_dir),
            tokenizer_lib.load_tokenizer(bare_dir / "tokenizer.json")]
  for tokenizer in loaded:
    assert tokenizer.is_fast
    assert tokenizer("Hello World!")["input_ids"] == [101, 7592, 2088, 999, 102]
    assert (tokenizer.pad_token, tokenizer.cls_token, tokenizer.sep_token) == ("[PAD]", "[CLS]",
                                                                               "[SEP]")
  assert len({tokenizer_lib.tokenizer_fingerprint(t) for t in loaded}) == 1


def test_bare_file_special_tokens_come_from_its_vocabulary(tmp_path):
  tokenizer = tokenizer_lib.load_tokenizer(_save_tiny(tmp_path / "tokenizer.json"))
  assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id) == (0, 1, 2)
  assert tokenizer.mask_token is None  # the tiny vocabulary has none


def test_fingerprint_ignores_call_state_and_sees_casing_and_vocabulary(tmp_path):
  base = tokenizer_lib.load_tokenizer(_save_tiny(tmp_path / "a.json"))
  before = tokenizer_lib.tokenizer_fingerprint(base)
  base(["hello"], ["world"], truncation="only_second", max_length=8, stride=2,
       return_overflowing_tokens=True, padding="max_length")
  assert tokenizer_lib.tokenizer_fingerprint(base) == before
  cased = tokenizer_lib.load_tokenizer(_save_tiny(tmp_path / "b.json", lowercase=False))
  bigger = tokenizer_lib.load_tokenizer(_save_tiny(tmp_path / "c.json", extra_word="there"))
  assert len({before, tokenizer_lib.tokenizer_fingerprint(cased),
              tokenizer_lib.tokenizer_fingerprint(bigger)}) == 3
  assert len(before) == 64


def test_directory_without_tokenizer_files_is_not_found(tmp_path):
  with pytest.raises(FileNotFoundError, match="no tokenizer.json or tokenizer_config.json"):
    tokenizer_lib.load_tokenizer(tmp_path)
