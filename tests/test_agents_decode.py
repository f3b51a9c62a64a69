"""Span decoding: the vectorised search equals brute force; windows combine as in HF."""

import itertools

import jax
import numpy as np
import pytest

from l2d_jax.agents import decode


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
