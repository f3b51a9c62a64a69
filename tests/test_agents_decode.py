"""Span decoding: the vectorised search equals brute force; windows combine as in HF."""

import itertools

import jax
import numpy as np
import pytest

from l2d_jax.agents import decode
from l2d_jax.agents import store


def brute_force(start, end, mask, max_len):
  best = (-np.inf, 0, 0)
  for s, e in itertools.product(range(len(start)), repeat=2):
    if mask[s] and mask[e] and s <= e < s + max_len and start[s] + end[e] > best[0]:
      best = (start[s] + end[e], s, e)
  return best


@pytest.mark.parametrize("max_len", [1, 3, 30])
def test_window_best_spans_equals_brute_force(max_len):
  rng = np.random.default_rng(max_len)
  F, L = 6, 24
  start = rng.normal(size=(F, L)).astype(np.float32)
  end = rng.normal(size=(F, L)).astype(np.float32)
  mask = np.zeros((F, L), bool)
  for f in range(F):
    mask[f, rng.integers(1, 8):rng.integers(12, L)] = True
  out = jax.jit(decode.window_best_spans, static_argnums=3)(start, end, mask, max_len)
  for f in range(F):
    score, s, e = brute_force(start[f], end[f], mask[f], max_len)
    assert (int(out["start_F"][f]), int(out["end_F"][f])) == (s, e)
    np.testing.assert_allclose(out["score_F"][f], score, rtol=1e-6)
    np.testing.assert_allclose(out["null_score_F"][f], start[f, 0] + end[f, 0], rtol=1e-6)
    log_p = (jax.nn.log_softmax(start[f])[s] + jax.nn.log_softmax(end[f])[e])
    np.testing.assert_allclose(out["logprob_F"][f], log_p, rtol=1e-5)
    null_log_p = jax.nn.log_softmax(start[f])[0] + jax.nn.log_softmax(end[f])[0]
    np.testing.assert_allclose(out["null_logprob_F"][f], null_log_p, rtol=1e-5)


def test_decode_examples_combines_windows_and_thresholds_null():
  contexts = ["alpha beta gamma", "delta epsilon"]
  # window 0, 1 -> example 0; window 2 -> example 1. Token t covers chars offsets[t].
  offsets = np.full((3, 4, 2), -1, np.int32)
  offsets[0, 1:3] = [[0, 5], [6, 10]]
  offsets[1, 1:3] = [[6, 10], [11, 16]]
  offsets[2, 1:3] = [[0, 5], [6, 13]]
  windows = {
      "start_F": np.array([1, 2, 1]), "end_F": np.array([1, 2, 2]),
      "score_F": np.array([1.0, 3.0, 2.0], np.float32),
      "null_score_F": np.array([5.0, 0.5, 2.5], np.float32),
      "logprob_F": np.log(np.array([0.1, 0.6, 0.3], np.float32)),
      "null_logprob_F": np.log(np.array([0.05, 0.2, 0.4], np.float32)),
  }
  example_index = np.array([0, 0, 1])
  v1 = decode.decode_examples(windows, example_index, offsets, contexts)
  assert v1.text == ["gamma", "delta epsilon"]
  np.testing.assert_allclose(v1.null_score_E, [0.5, 2.5])
  np.testing.assert_allclose(v1.prob_E, [0.6, 0.3], rtol=1e-6)
  # v2: empty when null - best > threshold: example 1 has 2.5 - 2.0 = 0.5.
  v2 = decode.decode_examples(windows, example_index, offsets, contexts, null_threshold=0.4)
  assert v2.text == ["gamma", ""]
  # Abstaining, its confidence is the null span's probability (in the window of the lowest
  # null score: example 0's would be window 1, 0.2).
  assert v2.prob_E[1] == pytest.approx(0.4)
  v2_all = decode.decode_examples(windows, example_index, offsets, contexts, null_threshold=-10)
  assert v2_all.text == ["", ""]
  np.testing.assert_allclose(v2_all.prob_E, [0.2, 0.4], rtol=1e-6)
  v2_high = decode.decode_examples(windows, example_index, offsets, contexts, null_threshold=0.6)
  assert v2_high.text == ["gamma", "delta epsilon"]


def test_decode_examples_requires_a_window_per_question():
  windows = {k: np.zeros(1) for k in ("start_F", "end_F", "score_F", "null_score_F", "logprob_F",
                                      "null_logprob_F")}
  with pytest.raises(ValueError, match="have no window"):
    decode.decode_examples(windows, np.array([0]), np.zeros((1, 2, 2), np.int32), ["a", "b"])


def test_span_statistics_equal_a_hand_computation():
  """Two questions, three windows of 6 tokens (token 0 is [CLS], context from token 2)."""
  rng = np.random.default_rng(7)
  start = rng.normal(size=(3, 6)).astype(np.float32) * 2
  end = rng.normal(size=(3, 6)).astype(np.float32) * 2
  context = np.zeros((3, 6), bool)
  context[:, 2:5] = True
  context[2, 4] = False  # window 2 holds two context tokens only
  example_index = np.array([0, 0, 1])
  windows = {k: np.asarray(v) for k, v in jax.jit(decode.window_best_spans, static_argnums=3)(
      start, end, context, 2).items()}
  offsets = np.tile(np.arange(6)[None, :, None], (3, 1, 2)).astype(np.int32)
  decoded = decode.decode_examples(windows, example_index, offsets, ["abcdef", "abcdef"])
  stats = decode.span_statistics(windows, example_index, decoded)
  assert list(stats) == list(store.SPAN_STATISTICS)

  def softmax(x):
    return np.exp(x - x.max()) / np.exp(x - x.max()).sum()

  for e, candidates in ((0, [0, 1]), (1, [2])):
    # every span of at most 2 tokens inside the context, in every window of the question
    spans = [(start[f, s] + end[f, t], f, s, t) for f in candidates for s in range(6)
             for t in range(s, min(s + 2, 6)) if context[f, s] and context[f, t]]
    _, f, s, t = max(spans)
    assert decoded.best_window_E[e] == f
    p_start, p_end = softmax(start[f].astype(np.float64)), softmax(end[f].astype(np.float64))
    in_window = sorted((p_start[s2] * p_end[t2] for score, f2, s2, t2 in spans if f2 == f),
                       reverse=True)
    assert stats["best_prob_E"][e] == pytest.approx(p_start[s] * p_end[t], rel=1e-5)
    assert stats["top2_margin_E"][e] == pytest.approx(in_window[0] - in_window[1], rel=1e-4)
    answerable = context[f].copy()
    answerable[0] = True
    for name, logits in (("start_entropy_E", start[f]), ("end_entropy_E", end[f])):
      q = softmax(logits[answerable].astype(np.float64))
      assert stats[name][e] == pytest.approx(-(q * np.log(q)).sum(), rel=1e-5)
    null = min(start[g, 0] + end[g, 0] for g in candidates)
    assert stats["null_margin_E"][e] == pytest.approx(null - max(spans)[0], rel=1e-5, abs=1e-5)
    assert stats["num_windows_E"][e] == len(candidates)


def test_second_best_span_of_a_window_with_one_span_has_no_probability():
  start = np.array([[0.0, 1.0, 2.0]], np.float32)
  context = np.array([[False, False, True]])
  out = decode.window_best_spans(start, start, context, 5)
  assert float(np.exp(out["second_logprob_F"][0])) == 0.0
  assert float(out["start_entropy_F"][0]) > 0  # [CLS] and one context token
