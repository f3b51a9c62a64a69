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

`span_statistics` summarises, per question, how sure the model was: what a
rejector may read beside the question (see `store.SPAN_STATISTICS`).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from l2d_jax.agents import store as store_lib

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
  and end) under the window's start and end softmaxes. For `span_statistics`:
  `second_logprob_F`, the log-probability of the second-best span (another
  (start, end) pair; -1e9 and below when the window has a single span), and
  `start_entropy_F`, `end_entropy_F`, the entropies (nats) of the start and end
  distributions over the positions an answer can take, the context and [CLS].
  """
  start = start_logits_FxL.astype(jnp.float32)
  end = end_logits_FxL.astype(jnp.float32)
  length = start.shape[1]
  start_masked = jnp.where(context_mask_FxL, start, NEG)
  end_masked = jnp.where(context_mask_FxL, end, NEG)
  best_score = jnp.full(start.shape[:1], NEG, jnp.float32)
  best_start = jnp.zeros(start.shape[:1], jnp.int32)
  best_end = jnp.zeros(start.shape[:1], jnp.int32)
  top2_Fx2 = jnp.full(start.shape[:1] + (2,), 2 * NEG, jnp.float32)
  for d in range(min(max_answer_len, length)):
    # span (s, s + d) for every s: start[s] + end[s + d]
    scores = start_masked[:, :length - d] + end_masked[:, d:]
    s = jnp.argmax(scores, axis=1).astype(jnp.int32)
    score = jnp.take_along_axis(scores, s[:, None], axis=1)[:, 0]
    better = score > best_score
    best_score = jnp.where(better, score, best_score)
    best_start = jnp.where(better, s, best_start)
    best_end = jnp.where(better, s + d, best_end)
    length_top, _ = jax.lax.top_k(scores, min(2, length - d))
    top2_Fx2, _ = jax.lax.top_k(jnp.concatenate([top2_Fx2, length_top], axis=1), 2)
  log_p_start = jax.nn.log_softmax(start, axis=1)
  log_p_end = jax.nn.log_softmax(end, axis=1)
  logprob = (jnp.take_along_axis(log_p_start, best_start[:, None], axis=1)[:, 0] +
             jnp.take_along_axis(log_p_end, best_end[:, None], axis=1)[:, 0])
  # a span's log-probability is its score minus both log-normalisers (start[s] - logsumexp)
  normaliser_F = (jax.nn.logsumexp(start, axis=1) + jax.nn.logsumexp(end, axis=1))
  answerable_FxL = jnp.asarray(context_mask_FxL).at[:, 0].set(True)
  return {"start_F": best_start, "end_F": best_end, "score_F": best_score,
          "null_score_F": start[:, 0] + end[:, 0], "logprob_F": logprob,
          "null_logprob_F": log_p_start[:, 0] + log_p_end[:, 0],
          "second_logprob_F": top2_Fx2[:, 1] - normaliser_F,
          "start_entropy_F": _entropy(start, answerable_FxL),
          "end_entropy_F": _entropy(end, answerable_FxL)}


def _entropy(logits_FxL: jax.Array, mask_FxL: jax.Array) -> jax.Array:
  """Entropy (nats) of the softmax of `logits_FxL` restricted to `mask_FxL`, `[F]`."""
  log_p = jax.nn.log_softmax(jnp.where(mask_FxL, logits_FxL, -jnp.inf), axis=1)
  return -jnp.sum(jnp.where(mask_FxL, jnp.exp(log_p) * log_p, 0.0), axis=1)


def _lowest_per_example(key_F: np.ndarray, example_index_F: np.ndarray) -> np.ndarray:
  """For each example present, in example order, its window of lowest `key_F` (first on ties)."""
  order = np.lexsort((key_F, example_index_F))  # by example, lowest key first
  sorted_ids = example_index_F[order]
  first = np.ones(len(order), bool)
  first[1:] = sorted_ids[1:] != sorted_ids[:-1]
  return order[first]


@dataclasses.dataclass(frozen=True)
class Decoded:
  """Per question: the answer text, its span score, the null score and the span's probability.

  `best_window_E` is the window of the best span (the first on ties).
  """
  text: list[str]
  score_E: np.ndarray
  null_score_E: np.ndarray
  prob_E: np.ndarray
  best_window_E: np.ndarray


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
  return Decoded(text=texts, score_E=score_E, null_score_E=null_E, prob_E=prob_E,
                 best_window_E=best_f)


def span_statistics(windows: dict[str, np.ndarray], example_index_F: np.ndarray,
                    decoded: Decoded) -> dict[str, np.ndarray]:
  """`store.SPAN_STATISTICS` per question, float32 `[E]` each, from its windows' outputs.

  Read in the window of the question's best span (`decoded.best_window_E`):
  the best span's probability (also when a v2 answer is empty), its margin
  over the second-best span's probability, and the entropies of the start and
  end distributions; over all windows: the null margin `null - best` (what the
  v2 threshold compares) and the number of windows.
  """
  f_E = decoded.best_window_E
  best_E = np.exp(np.asarray(windows["logprob_F"], np.float32)[f_E])
  second_E = np.exp(np.asarray(windows["second_logprob_F"], np.float32)[f_E])
  statistics = {
      "best_prob_E": best_E, "top2_margin_E": best_E - second_E,
      "start_entropy_E": np.asarray(windows["start_entropy_F"], np.float32)[f_E],
      "end_entropy_E": np.asarray(windows["end_entropy_F"], np.float32)[f_E],
      "null_margin_E": decoded.null_score_E - decoded.score_E,
      "num_windows_E": np.bincount(example_index_F, minlength=len(f_E)),
  }
  return {name: np.asarray(statistics[name], np.float32) for name in store_lib.SPAN_STATISTICS}
