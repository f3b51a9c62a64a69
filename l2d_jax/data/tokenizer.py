"""Loads the Hugging Face fast tokenizer an expert or the rejector reads with, and fingerprints it.

Features (token windows, offsets, labels) are only as reproducible as the
tokenizer that made them, so every cache and store built from tokens is keyed
by `tokenizer_fingerprint`. Loading accepts what the experiments name: a bare
`tokenizer.json` (the synthetic demo's own WordPiece), a model directory, or a
model name resolved by `l2d_jax.models.hub.resolve_model_dir` (the packaged
all-MiniLM-L6-v2 offline, any Hub name on a networked machine).
"""

import hashlib
import json
import pathlib

import tokenizers
import transformers

from l2d_jax.models import hub

# Special-token roles and the spellings a bare tokenizer.json may use for them.
_SPECIAL_TOKEN_SPELLINGS = {
    "pad_token": ("[PAD]", "<pad>"),
    "unk_token": ("[UNK]", "<unk>"),
    "cls_token": ("[CLS]", "<s>"),
    "sep_token": ("[SEP]", "</s>"),
    "mask_token": ("[MASK]", "<mask>"),
}


def load_tokenizer(name_or_path: str | pathlib.Path) -> transformers.PreTrainedTokenizerFast:
  """A fast tokenizer from a `tokenizer.json` file, a directory holding one, or a model name.

  A directory with a `tokenizer_config.json` is loaded by `transformers.AutoTokenizer`
  (local files only), so its special tokens and casing follow that config; one with
  only a `tokenizer.json` (or the file itself) gets its special tokens from the
  usual spellings (`[PAD]`, `<pad>`, ...) found in its vocabulary. Names go
  through `resolve_model_dir`. Raises FileNotFoundError when nothing usable is
  found and ValueError for a slow tokenizer (features need character offsets,
  which only fast tokenizers give).
  """
  path = pathlib.Path(name_or_path).expanduser()
  if path.is_file():
    return _from_tokenizer_json(path)
  model_dir = path if path.is_dir() else hub.resolve_model_dir(name_or_path)
  if (model_dir / "tokenizer_config.json").exists():
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
  elif (model_dir / "tokenizer.json").exists():
    tokenizer = _from_tokenizer_json(model_dir / "tokenizer.json")
  else:
    raise FileNotFoundError(f"no tokenizer.json or tokenizer_config.json in {model_dir}")
  if not tokenizer.is_fast:
    raise ValueError(f"tokenizer at {model_dir} is not a fast tokenizer; character offsets "
                     "for answer spans need one (add its tokenizer.json)")
  return tokenizer


def _from_tokenizer_json(path: pathlib.Path) -> transformers.PreTrainedTokenizerFast:
  """Wraps a bare `tokenizer.json`, naming special tokens by the spellings in its vocabulary."""
  backend = tokenizers.Tokenizer.from_file(str(path))
  special = {role: next(s for s in spellings if backend.token_to_id(s) is not None)
             for role, spellings in _SPECIAL_TOKEN_SPELLINGS.items()
             if any(backend.token_to_id(s) is not None for s in spellings)}
  return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **special)


def tokenizer_fingerprint(tokenizer: transformers.PreTrainedTokenizerFast) -> str:
  """A hex sha256 of everything about `tokenizer` that changes token ids, offsets or windows.

  Covers the backend's serialized pipeline (normalizer, where `do_lower_case` and
  accent stripping live for a fast tokenizer; pre-tokenizer; vocabulary;
  special-token template) and the wrapper's special tokens and padding/truncation
  sides. Per-call truncation and padding state, which every call rewrites, is left
  out, so the same tokenizer loaded from its directory or its bare tokenizer.json
  fingerprints the same.
  """
  backend = json.loads(tokenizer.backend_tokenizer.to_str())
  backend.pop("truncation", None)
  backend.pop("padding", None)
  content = {
      "backend": backend,
      "special_tokens": tokenizer.special_tokens_map,
      "padding_side": tokenizer.padding_side,
      "truncation_side": tokenizer.truncation_side,
  }
  return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()
