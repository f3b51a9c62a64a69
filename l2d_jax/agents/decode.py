"""From start/end logits to answers: the exact best span per window, then per question.

`window_best_spans` runs on the device inside the jitted precompute step, so only
a few numbers per window (not [F, L] logits) are needed on the host to decode
answers. It searches every span of at most `max_answer_len` tokens inside the
context part of the window (exact, not a top-k heuristic): for each length d the
scores `start[s] + end[s + d]` are one shifted add, so the cost is
O(F * L * max_answer_len) vectorised work.

`decode_examples` then combines the windows of each question on the host, as
Hugging Face's `postprocess_qa_predictions` does: the best-scoring span over all
windows, the no-answer (null) score as the minimum CLS score over windows, and
for SQuAD v2 the empty answer when `null - best > threshold`.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

NEG = -1e9


@dataclasses.dataclass(frozen=True)
class WindowSpans:
  """Per window (feature): its best span, span score, CLS score and both log-probabilities."""
  start_F: np.ndarray
  end_F: np.ndarray
  score_F: np.ndarray
  null_score_F: np.ndarray
  logprob_F: np.ndarray
  null_logprob_F: np.ndarray


def window_best_spans(start_logits_FxL: jax.Array, end_logits_FxL: jax.Array,
                      context_mask_FxL: jax.Array, max_answer_len: int) -> dict[str, jax.Array]:
  """Best (start, end) with start <= end < start + max_answer_len, both in the context.

  Returns int32 `start_F`, `end_F` and float32 `score_F` (start + end logit),
  `null_score_F` (CLS start + end logit), and `logprob_F` and `null_logprob_F`,
  the log-probabilities of the best span and of the null span ([CLS] as start
  and end) under the window's start and end softmaxes.
  """
  start = start_logits_FxL.astype(jnp.float32)
  end = end_logits_FxL.astype(jnp.float32)
  length = start.shape[1]
  start_masked = jnp.where(context_mask_FxL, start, NEG)
  end_masked = jnp.where(context_mask_FxL, end, NEG)
  best_score = jnp.full(start.shape[:1], NEG, jnp.float32)
  best_start = jnp.zeros(start.shape[:1], jnp.int32)
  best_end = jnp.zeros(start.shape[:1], jnp.int32)
  for d in range(min(max_answer_len, length)):
    # span (s, s + d) for every s: start[s] + end[s + d]
    scores = start_masked[:, :length - d] + end_masked[:, d:]
    s = jnp.argmax(scores, axis=1).astype(jnp.int32)
    score = jnp.take_along_axis(scores, s[:, None], axis=1)[:, 0]
    better = score > best_score
    best_score = jnp.where(better, score, best_score)
    best_start = jnp.where(better, s, best_start)
    best_end = jnp.where(better, s + d, best_end)
  log_p_start = jax.nn.log_softmax(start, axis=1)
  log_p_end = jax.nn.log_softmax(end, axis=1)
  logprob = (jnp.take_along_axis(log_p_start, best_start[:, None], axis=1)[:, 0] +
             jnp.take_along_axis(log_p_end, best_end[:, None], axis=1)[:, 0])
  return {"start_F": best_start, "end_F": best_end, "score_F": best_score,
          "null_score_F": start[:, 0] + end[:, 0], "logprob_F": logprob,
          "null_logprob_F": log_p_start[:, 0] + log_p_end[:, 0]}


def _lowest_per_example(key_F: np.ndarray, example_index_F: np.ndarray) -> np.ndarray:
  """For each example present, in example order, its window of lowest `key_F` (first on ties)."""
  order = np.lexsort((key_F, example_index_F))  # by example, lowest key first
  sorted_ids = example_index_F[order]
  first = np.ones(len(order), bool)
  first[1:] = sorted_ids[1:] != sorted_ids[:-1]
  return order[first]


@dataclasses.dataclass(frozen=True)
class Decoded:
  """Per question: the answer text, its span score, the null score and the span's probability."""
  text: list[str]
  score_E: np.ndarray
  null_score_E: np.ndarray
  prob_E: np.ndarray


def decode_examples(windows: dict[str, np.ndarray], example_index_F: np.ndarray,
                    offsets_FxLx2: np.ndarray, contexts: list[str], *,
                    null_threshold: float | None = None) -> Decoded:
  """Combines windows into one answer per question (`contexts[e]` is question e's context).

  `null_threshold=None` never answers empty (SQuAD v1.1); otherwise the answer
  is empty when `null_score - best_span_score > null_threshold` (SQuAD v2.0),
  the null score being the lowest over the question's windows. `prob_E` is the
  probability of the answer given, the confidence that cascades threshold: the
  best span's, or for an empty answer the null span's in the window of that
  lowest null score (so a model that abstains is surer where it abstains more
  clearly).
  """
  num_examples = len(contexts)
  score_F = np.asarray(windows["score_F"], np.float32)
  best_f = _lowest_per_example(-score_F, example_index_F)
  if not np.array_equal(example_index_F[best_f], np.arange(num_examples)):
    missing = sorted(set(range(num_examples)) - set(example_index_F[best_f].tolist()))
    raise ValueError(f"{len(missing)} questions have no window (first: {missing[:5]})")
  null_F = np.asarray(windows["null_score_F"], np.float32)
  null_f = _lowest_per_example(null_F, example_index_F)
  null_E = null_F[null_f]
  score_E = score_F[best_f]
  prob_E = np.exp(np.asarray(windows["logprob_F"], np.float32)[best_f])
  starts = np.asarray(windows["start_F"])[best_f]
  ends = np.asarray(windows["end_F"])[best_f]
  texts = []
  for e, (f, s, t) in enumerate(zip(best_f, starts, ends)):
    empty = null_threshold is not None and null_E[e] - score_E[e] > null_threshold
    if empty or score_E[e] <= NEG / 2:
      texts.append("")
      prob_E[e] = np.exp(np.float32(windows["null_logprob_F"][null_f[e]]))
    else:
      texts.append(contexts[e][offsets_FxLx2[f, s, 0]:offsets_FxLx2[f, t, 1]])
  return Decoded(text=texts, score_E=score_E, null_score_E=null_E, prob_E=prob_E)
