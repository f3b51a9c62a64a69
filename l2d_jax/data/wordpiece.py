"""A small uncased BERT-style WordPiece tokenizer trained on a QA corpus.

The demo's experts and rejector are trained from scratch on synthetic data, so
they need a tokenizer that downloads nothing and whose vocabulary fits that
data. This builds one with the `tokenizers` library (BERT normalizer and
pre-tokenizer, a WordPiece model whose vocabulary is learnt from the corpus's
word counts, `[CLS] A [SEP] B [SEP]` post-processor) and saves it as a
directory that both `transformers.AutoTokenizer.from_pretrained(dir)` and
`tokenizers.Tokenizer.from_file(dir / "tokenizer.json")` load. The same corpus
always gives the same files.
"""

import collections
import json
import pathlib
import string
from collections.abc import Iterable, Iterator
from typing import Any

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Always in the vocabulary, so that any plain-ASCII text tokenizes without [UNK].
BASE_ALPHABET = string.ascii_lowercase + string.digits + string.punctuation


def squad_texts(data: dict[str, Any]) -> Iterator[str]:
  """Every context and question of a SQuAD JSON dict, in file order: the training corpus."""
  for article in data["data"]:
    for paragraph in article["paragraphs"]:
      yield paragraph["context"]
      for qa in paragraph["qas"]:
        yield qa["question"]


def train_wordpiece(texts: Iterable[str], vocab_size: int = 512,
                    min_frequency: int = 1) -> tokenizers.Tokenizer:
  """An uncased WordPiece tokenizer with BERT's special tokens and pair post-processor.

  The vocabulary is the special tokens, every character seen and those of
  `BASE_ALPHABET` (alone and as a `##` continuation), then whole words by
  falling frequency (ties by spelling) until `vocab_size`; rarer or unseen
  words fall back to pieces. It is chosen
  here rather than by `tokenizers.trainers.WordPieceTrainer`, whose merge ties
  are broken by hash-seeded ids, so that its vocabulary changes between runs on
  the same corpus; this one does not.
  """
  normalizer = normalizers.BertNormalizer(
      clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
  pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  counts = collections.Counter(
      word for text in texts
      for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
  chars = sorted(set(BASE_ALPHABET) | {c for word in counts for c in word})
  # The pre-tokenizer splits punctuation off, so it never continues a word.
  vocab = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars if c not in string.punctuation]
  if len(vocab) > vocab_size:
    raise ValueError(f"vocab_size {vocab_size} is below the {len(vocab)} special tokens and "
                     "characters of this corpus")
  words = sorted((w for w, n in counts.items() if n >= min_frequency and len(w) > 1),
                 key=lambda w: (-counts[w], w))
  vocab += words[:vocab_size - len(vocab)]
  tokenizer = tokenizers.Tokenizer(models.WordPiece(
      {token: i for i, token in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100))
  # Already in the vocabulary; this marks them special (kept whole, skipped by decode).
  tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
  tokenizer.normalizer = normalizer
  tokenizer.pre_tokenizer = pre_tokenizer
  tokenizer.decoder = decoders.WordPiece(prefix="##")
  tokenizer.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
      special_tokens=[(t, vocab.index(t)) for t in ("[CLS]", "[SEP]")])
  return tokenizer


def save_tokenizer(tokenizer: tokenizers.Tokenizer, out_dir: str | pathlib.Path,
                   model_max_length: int = 512) -> pathlib.Path:
  """Writes tokenizer.json, tokenizer_config.json, special_tokens_map.json and vocab.txt."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  tokenizer.save(str(out_dir / "tokenizer.json"))
  vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
  (out_dir / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab), encoding="utf-8")
  special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
             "cls_token": "[CLS]", "mask_token": "[MASK]"}
  config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True,
            "model_max_length": model_max_length, "clean_up_tokenization_spaces": False, **special}
  _write_json(out_dir / "tokenizer_config.json", config)
  _write_json(out_dir / "special_tokens_map.json", special)
  return out_dir


def build_tokenizer(data: dict[str, Any], out_dir: str | pathlib.Path,
                    vocab_size: int = 512) -> pathlib.Path:
  """Trains on a SQuAD JSON dict's contexts and questions and saves the directory."""
  return save_tokenizer(train_wordpiece(squad_texts(data), vocab_size=vocab_size), out_dir)


def _write_json(path: pathlib.Path, obj: dict[str, Any]) -> None:
  path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
