"""Turns QA examples into fixed-length token windows with span labels, as experts read them.

An extractive reader sees `max_seq_len` tokens: `[CLS] question [SEP] context
window [SEP]`. Long contexts are cut into overlapping windows (`doc_stride`
tokens shared between neighbours), exactly as the Hugging Face `run_qa.py`
preprocessing does with a fast tokenizer (`truncation="only_second"`,
overflowing tokens). Each window keeps the character offsets of its context
tokens, so a predicted token span maps back to context text, and the start/end
token labels of the first gold answer; the label is 0 (CLS) when the answer is
not wholly inside the window or the question has no answer. `example_index_F`
maps windows back to questions, since costs and metrics are per question.

Tokenization runs in batches through the Rust tokenizer; labels and masks are
computed with vectorized numpy over whole batches.
"""

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import transformers

from l2d_jax.data.example import DataError, Example


@dataclasses.dataclass(frozen=True)
class FeatureParams:
  """How examples are cut into windows (the `run_qa.py` / BERT SQuAD defaults)."""
  max_seq_len: int = 384
  doc_stride: int = 128
  max_query_len: int = 64

  def __post_init__(self):
    if min(self.max_seq_len, self.max_query_len) <= 0 or self.doc_stride < 0:
      raise ValueError(f"feature parameters must be positive: {self}")
    if self.max_seq_len - self.max_query_len - 3 <= self.doc_stride:
      raise ValueError(
          f"max_seq_len={self.max_seq_len} leaves no more than doc_stride={self.doc_stride} "
          f"context tokens per window after a {self.max_query_len}-token question; "
          "windows would not advance")


@dataclasses.dataclass(frozen=True, eq=False)
class Features:
  """Token windows of a list of examples, one row per window (F windows, L tokens each).

  `offsets_FxLx2` holds [start, end) character offsets into the example's context
  for context tokens and -1 for question, special and padding tokens.
  `start_positions_F`/`end_positions_F` are the token indices of the first gold
  answer's span in the window, 0 (CLS) when there is none in it.
  `example_index_F` indexes `example_ids`.
  """
  input_ids_FxL: np.ndarray
  token_type_ids_FxL: np.ndarray
  attention_mask_FxL: np.ndarray
  offsets_FxLx2: np.ndarray
  start_positions_F: np.ndarray
  end_positions_F: np.ndarray
  example_index_F: np.ndarray
  example_ids: list[str]
  params: FeatureParams

  ARRAY_FIELDS: ClassVar[tuple[str, ...]] = (
      "input_ids_FxL", "token_type_ids_FxL", "attention_mask_FxL", "offsets_FxLx2",
      "start_positions_F", "end_positions_F", "example_index_F")

  @property
  def num_features(self) -> int:
    return len(self.example_index_F)

  @property
  def num_examples(self) -> int:
    return len(self.example_ids)

  def arrays(self) -> dict[str, np.ndarray]:
    """The per-window arrays by field name (what a cache stores)."""
    return {name: getattr(self, name) for name in self.ARRAY_FIELDS}

  def select(self, example_indices: Sequence[int] | np.ndarray) -> "Features":
    """The windows of the given examples, renumbered in the order given (for splits).

    Windows of each example stay together and in their original order.
    """
    example_indices = np.asarray(example_indices, dtype=np.int64)
    if np.unique(example_indices).size != example_indices.size:
      raise ValueError("select() needs distinct example indices")
    new_index_E = np.full(self.num_examples, -1, dtype=np.int64)
    new_index_E[example_indices] = np.arange(example_indices.size)
    new_example_F = new_index_E[self.example_index_F]
    kept_F = np.flatnonzero(new_example_F >= 0)
    order_F = kept_F[np.argsort(new_example_F[kept_F], kind="stable")]
    selected = {name: array[order_F] for name, array in self.arrays().items()}
    selected["example_index_F"] = new_example_F[order_F].astype(np.int32)
    return Features(**selected, example_ids=[self.example_ids[i] for i in example_indices],
                    params=self.params)


def make_features(examples: Sequence[Example], tokenizer: transformers.PreTrainedTokenizerFast,
                  params: FeatureParams, batch_size: int = 2048) -> Features:
  """Tokenizes `examples` into windows with offsets, span labels and the window-to-example map.

  Questions are left-stripped (as in `run_qa.py`) and cut to `max_query_len`
  tokens. Raises DataError for an example whose context yields no tokens, and
  ValueError for a tokenizer that pads or truncates on the left.
  """
  if (tokenizer.padding_side, tokenizer.truncation_side) != ("right", "right"):
    raise ValueError("features need a tokenizer that pads and truncates on the right, not "
                     f"{tokenizer.padding_side!r}/{tokenizer.truncation_side!r}")
  parts = [_batch_features(examples[begin:begin + batch_size], begin, tokenizer, params)
           for begin in range(0, len(examples), batch_size)]
  if not parts:
    empty = {name: np.zeros((0, params.max_seq_len, 2) if name == "offsets_FxLx2"
                            else (0, params.max_seq_len) if name.endswith("FxL") else (0,),
                            dtype=np.int32)
             for name in Features.ARRAY_FIELDS}
    return Features(**empty, example_ids=[], params=params)
  return Features(**{name: np.concatenate([part[name] for part in parts])
                     for name in Features.ARRAY_FIELDS},
                  example_ids=[example.id for example in examples], params=params)


def _batch_features(examples: Sequence[Example], first_index: int,
                    tokenizer: transformers.PreTrainedTokenizerFast,
                    params: FeatureParams) -> dict[str, np.ndarray]:
  """The arrays of `Features` for one batch; `first_index` numbers its first example."""
  questions = _truncated_questions([e.question.lstrip() for e in examples], tokenizer,
                                   params.max_query_len)
  encoded = tokenizer(
      questions, [e.context for e in examples], truncation="only_second",
      max_length=params.max_seq_len, stride=params.doc_stride, padding="max_length",
      return_overflowing_tokens=True, return_offsets_mapping=True, return_token_type_ids=True,
      return_attention_mask=True)
  arrays = {key: np.asarray(encoded[key], dtype=np.int32) for key in (
      "input_ids", "token_type_ids", "attention_mask", "offset_mapping",
      "overflow_to_sample_mapping")}
  example_F = arrays["overflow_to_sample_mapping"]
  num_tokens_F = arrays["attention_mask"].sum(axis=1)
  context_start_E, suffix_len_E = _context_layout(encoded.encodings, example_F, num_tokens_F,
                                                  examples)
  context_start_F = context_start_E[example_F]
  context_end_F = num_tokens_F - suffix_len_E[example_F]  # one past the last context token
  positions_L = np.arange(params.max_seq_len)
  context_FxL = ((positions_L >= context_start_F[:, None]) &
                 (positions_L < context_end_F[:, None]))
  offsets_FxLx2 = np.where(context_FxL[..., None], arrays["offset_mapping"], -1)
  start_char_E, end_char_E = _first_answer_chars(examples)
  start_F, end_F = _span_labels(offsets_FxLx2, context_FxL, context_start_F, context_end_F,
                                start_char_E[example_F], end_char_E[example_F])
  return {
      "input_ids_FxL": arrays["input_ids"],
      "token_type_ids_FxL": arrays["token_type_ids"],
      "attention_mask_FxL": arrays["attention_mask"],
      "offsets_FxLx2": offsets_FxLx2,
      "start_positions_F": start_F.astype(np.int32),
      "end_positions_F": end_F.astype(np.int32),
      "example_index_F": (example_F + first_index).astype(np.int32),
  }


def _truncated_questions(questions: list[str], tokenizer: transformers.PreTrainedTokenizerFast,
                         max_query_len: int) -> list[str]:
  """`questions`, each cut after its `max_query_len`-th token (at that token's last character).

  Cutting the text at a token boundary re-tokenizes to the same leading tokens
  for WordPiece, so the pair encoding sees exactly the truncated question.
  """
  encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True,
                      return_attention_mask=False, return_token_type_ids=False)
  return [question[:offsets[max_query_len - 1][1]] if len(offsets) > max_query_len else question
          for question, offsets in zip(questions, encoded["offset_mapping"])]


def _context_layout(encodings: list, example_F: np.ndarray, num_tokens_F: np.ndarray,
                    examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
  """Per example: the first context token's position and the number of tokens after the context.

  Both are the same in every window of an example (same question, same
  template), so they are read once, from the example's first window.
  """
  first_window_E = np.flatnonzero(np.r_[True, example_F[1:] != example_F[:-1]])
  context_start_E = np.empty(len(examples), dtype=np.int64)
  context_end_E = np.empty(len(examples), dtype=np.int64)
  for e, f in enumerate(first_window_E):
    sequence_ids = encodings[f].sequence_ids
    if 1 not in sequence_ids:
      raise DataError("context has no tokens", qid=examples[e].id, field="context")
    context_start_E[e] = sequence_ids.index(1)
    context_end_E[e] = len(sequence_ids) - sequence_ids[::-1].index(1)
  return context_start_E, num_tokens_F[first_window_E] - context_end_E


def _first_answer_chars(examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
  """Per example, [start, end) characters of the first gold answer; -1 where none is trained on."""
  has_answer = [bool(e.answers) and not (e.is_impossible or e.no_evidence) for e in examples]
  start_char_E = np.array([e.answers[0].start if has else -1
                           for e, has in zip(examples, has_answer)], dtype=np.int64)
  end_char_E = np.array([e.answers[0].end if has else -1
                         for e, has in zip(examples, has_answer)], dtype=np.int64)
  return start_char_E, end_char_E


def _span_labels(offsets_FxLx2: np.ndarray, context_FxL: np.ndarray,
                 context_start_F: np.ndarray, context_end_F: np.ndarray,
                 start_char_F: np.ndarray, end_char_F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Start/end token labels: the context tokens overlapping the answer, or 0 (CLS).

  As in `run_qa.py`, a window is labelled only if it covers the answer's whole
  character span. The span is the first context token ending after the answer's
  start through the last one starting before its end; this equals `run_qa.py`'s
  labels except where an answer begins or ends in whitespace, where it drops the
  neighbouring token `run_qa.py` would add.
  """
  rows_F = np.arange(len(offsets_FxLx2))
  window_start_char_F = offsets_FxLx2[rows_F, context_start_F, 0]
  window_end_char_F = offsets_FxLx2[rows_F, context_end_F - 1, 1]
  in_window_F = ((start_char_F >= 0) & (window_start_char_F <= start_char_F) &
                 (window_end_char_F >= end_char_F))
  after_start_FxL = context_FxL & (offsets_FxLx2[..., 1] > start_char_F[:, None])
  before_end_FxL = context_FxL & (offsets_FxLx2[..., 0] < end_char_F[:, None])
  start_F = np.argmax(after_start_FxL, axis=1)
  end_F = before_end_FxL.shape[1] - 1 - np.argmax(before_end_FxL[:, ::-1], axis=1)
  labelled_F = (in_window_F & after_start_FxL.any(axis=1) & before_end_FxL.any(axis=1) &
                (start_F <= end_F))
  return np.where(labelled_F, start_F, 0), np.where(labelled_F, end_F, 0)


def decode_span(features: Features, f: int, start_tok: int, end_tok: int, context: str) -> str:
  """The context text covered by tokens `start_tok..end_tok` (inclusive) of window `f`.

  Empty when the span is reversed or either end is not a context token (for
  instance the CLS "no answer" position).
  """
  start_char = features.offsets_FxLx2[f, start_tok, 0]
  end_char = features.offsets_FxLx2[f, end_tok, 1]
  if start_char < 0 or end_char < 0 or end_tok < start_tok:
    return ""
  return context[start_char:end_char]
