"""Tests for l2d_jax.defer.costs: costs, loss selection and span NLL against float64 references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2d_jax.defer import costs


def _span_nll_reference(start, end, start_pos, end_pos, valid) -> np.ndarray:
  """Per feature and agent, -log p(start) - log p(end) over valid positions, float64 loops."""
  num_features, num_agents, _ = start.shape
  out = np.zeros((num_features, num_agents))
  for f in range(num_features):
    for j in range(num_agents):
      total = 0.0
      for logits, pos in ((start[f, j], start_pos[f]), (end[f, j], end_pos[f])):
        keep = valid[f, j]
        if not (0 <= pos < len(logits)) or not keep[pos]:
          total = np.inf
          break
        kept = logits[keep].astype(np.float64)
        log_norm = kept.max() + np.log(np.sum(np.exp(kept - kept.max())))
        total += log_norm - float(logits[pos])
      out[f, j] = total
  return out


def _example_reference(nll, example_index, holds_gold, num_examples) -> np.ndarray:
  """Min over gold-holding windows, else min over all windows, else inf; float64 loops."""
  out = np.full((num_examples, nll.shape[1]), np.inf)
  for e in range(num_examples):
    rows = example_index == e
    gold = rows & holds_gold
    if gold.any() and np.isfinite(nll[gold].min(0)).all():
      out[e] = nll[gold].min(0)
    elif rows.any():
      out[e] = nll[rows].min(0)
  return out


def _random_features(rng, num_features, num_agents, seq_len):
  """Logits, gold positions and masks shaped like a store: CLS + a context range + padding."""
  start = rng.normal(scale=3.0, size=(num_features, num_agents, seq_len)).astype(np.float32)
  end = rng.normal(scale=3.0, size=(num_features, num_agents, seq_len)).astype(np.float32)
  valid = np.zeros((num_features, num_agents, seq_len), bool)
  start_pos = np.zeros(num_features, np.int32)
  end_pos = np.zeros(num_features, np.int32)
  for f in range(num_features):
    context_start = rng.integers(3, 6)
    context_end = rng.integers(context_start + 3, seq_len + 1)  # the rest is padding
    valid[f, :, 0] = True
    valid[f, :, context_start:context_end] = True
    if rng.random() < 0.7:  # answer inside this window; otherwise the CLS label
      start_pos[f] = rng.integers(context_start, context_end)
      end_pos[f] = rng.integers(start_pos[f], context_end)
  return start, end, start_pos, end_pos, valid


def test_agent_costs_affine_per_agent():
  loss = np.array([[0.0, 0.5, 1.0], [0.2, 0.0, 0.7]], np.float32)
  alpha = np.array([1.0, 2.0, 0.5], np.float32)
  beta = np.array([0.0, 0.1, 0.3], np.float32)
  np.testing.assert_allclose(np.asarray(costs.agent_costs(loss, alpha, beta)),
                             alpha * loss + beta, rtol=1e-7)
  np.testing.assert_allclose(np.asarray(costs.agent_costs(loss, 2.0, 0.25)), 2 * loss + 0.25)


def test_sweep_over_alpha_and_beta_under_vmap_equals_loop():
  loss = jnp.asarray(np.random.default_rng(0).uniform(size=(5, 3)), jnp.float32)
  alphas = jnp.array([[1.0, 1.0, 1.0], [0.5, 2.0, 3.0]])
  betas = jnp.array([[0.0, 0.1, 0.2], [0.0, 0.05, 0.4]])
  swept = jax.jit(jax.vmap(costs.agent_costs, in_axes=(None, 0, 0)))(loss, alphas, betas)
  for k in range(2):
    np.testing.assert_allclose(np.asarray(swept[k]),
                               np.asarray(costs.agent_costs(loss, alphas[k], betas[k])), rtol=1e-7)


def test_select_loss():
  em = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  f1 = jnp.array([[1.0, 0.4], [0.25, 1.0]])
  nll = jnp.array([[0.1, 2.3], [4.0, 0.2]])
  np.testing.assert_allclose(np.asarray(costs.select_loss("1-f1", em_ExJ=em, f1_ExJ=f1)),
                             [[0.0, 0.6], [0.75, 0.0]], rtol=1e-6)
  np.testing.assert_array_equal(
      np.asarray(costs.select_loss(costs.LossType.ONE_MINUS_EM, em_ExJ=em, f1_ExJ=f1)),
      [[0.0, 1.0], [1.0, 0.0]])
  np.testing.assert_array_equal(
      np.asarray(costs.select_loss("span_nll", em_ExJ=em, f1_ExJ=f1, span_nll_ExJ=nll)),
      np.asarray(nll))


def test_select_loss_errors():
  em = f1 = jnp.zeros((1, 2))
  with pytest.raises(ValueError, match=r"unknown loss type '1-acc'; expected one of "
                                       r"\['1-f1', '1-em', 'span_nll'\]"):
    costs.select_loss("1-acc", em_ExJ=em, f1_ExJ=f1)
  with pytest.raises(ValueError, match="loss type 'span_nll' needs span_nll_ExJ"):
    costs.select_loss("span_nll", em_ExJ=em, f1_ExJ=f1)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_span_nll_matches_reference_with_padding_masks(dtype):
  start, end, start_pos, end_pos, valid = _random_features(np.random.default_rng(3), 9, 3, 20)
  # The reference sees the same (rounded) logits the function does.
  start = np.asarray(jnp.asarray(start, dtype), np.float32)
  end = np.asarray(jnp.asarray(end, dtype), np.float32)
  got = jax.jit(costs.span_nll_FxJ)(jnp.asarray(start, dtype), jnp.asarray(end, dtype),
                                    start_pos, end_pos, valid)
  assert got.shape == (9, 3) and got.dtype == jnp.float32
  expected = _span_nll_reference(start, end, start_pos, end_pos, valid)
  assert np.all(np.isfinite(expected))
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
  # Padding logits are ignored: changing them leaves the NLL unchanged.
  noisy = np.where(valid, start, 1e3).astype(np.float32)
  np.testing.assert_allclose(
      np.asarray(costs.span_nll_FxJ(noisy, end, start_pos, end_pos, valid)), expected, rtol=1e-5)


def test_span_nll_is_inf_for_invalid_gold_and_padding_features():
  logits = jnp.zeros((4, 1, 6))
  valid = np.ones((4, 1, 6), bool)
  valid[0, 0, 3] = False  # gold start masked
  valid[3] = False  # an all-padding feature
  start_pos = jnp.array([3, 9, 2, 0])  # feature 1: gold out of range
  end_pos = jnp.array([4, 4, 2, 0])
  got = np.asarray(jax.jit(costs.span_nll_FxJ)(logits, logits, start_pos, end_pos, valid))
  assert np.isinf(got[[0, 1, 3], 0]).all()
  np.testing.assert_allclose(got[2, 0], 2 * np.log(6), rtol=1e-6)  # uniform over 6 positions


def test_gold_window_mask():
  start_pos = jnp.array([0, 7, 0, 0, 0, 3])
  example_index = jnp.array([0, 0, 1, 1, 2, 2])
  is_impossible = jnp.array([False, True, False])
  np.testing.assert_array_equal(
      np.asarray(costs.gold_window_mask(start_pos, example_index, is_impossible)),
      [False, True, True, True, False, True])


def test_example_span_nll_picks_the_window_holding_the_answer():
  # Example 0: 3 windows, only window 1 holds the answer; its CLS windows score lower but do
  # not count. Example 1: unanswerable, best of its 2 windows. Example 2: answerable, no
  # window holds it: best of its windows' CLS labels. Example 3: no feature. Row 6 is padding.
  nll = jnp.array([[0.1, 0.2], [2.0, 1.5], [0.3, 0.1], [0.9, 0.4], [0.6, 0.8], [3.0, 2.5],
                   [-9.0, -9.0]])
  example_index = jnp.array([0, 0, 0, 1, 1, 2, -1])
  holds_gold = costs.gold_window_mask(jnp.array([0, 5, 0, 0, 0, 0, 0]), example_index,
                                      jnp.array([False, True, False, False]))
  got = jax.jit(costs.example_span_nll_ExJ, static_argnums=3)(nll, example_index, holds_gold, 4)
  np.testing.assert_array_equal(np.asarray(got),
                                np.array([[2.0, 1.5], [0.6, 0.4], [3.0, 2.5], [np.inf, np.inf]],
                                         np.float32))


def test_costs_from_logits_on_device_match_reference_with_multi_window_examples():
  rng = np.random.default_rng(7)
  start, end, start_pos, end_pos, valid = _random_features(rng, 24, 4, 16)
  example_index = np.sort(rng.integers(0, 10, size=24)).astype(np.int32)  # 1..n windows each
  is_impossible = rng.random(10) < 0.3
  alpha = np.array([1.0, 1.0, 0.5, 2.0], np.float32)
  beta = np.array([0.0, 0.2, 0.4, 0.8], np.float32)

  @functools.partial(jax.jit, static_argnums=0)
  def device_costs(num_examples, start, end, start_pos, end_pos, valid, example_index,
                   is_impossible, alpha, beta):
    nll_FxJ = costs.span_nll_FxJ(start, end, start_pos, end_pos, valid)
    holds = costs.gold_window_mask(start_pos, example_index, is_impossible)
    nll_ExJ = costs.example_span_nll_ExJ(nll_FxJ, example_index, holds, num_examples)
    loss = costs.select_loss("span_nll", em_ExJ=nll_ExJ, f1_ExJ=nll_ExJ, span_nll_ExJ=nll_ExJ)
    return costs.agent_costs(loss, alpha, beta)

  got = device_costs(10, start, end, start_pos, end_pos, valid, example_index, is_impossible,
                     alpha, beta)
  holds = (start_pos != 0) | is_impossible[example_index]
  nll = _example_reference(_span_nll_reference(start, end, start_pos, end_pos, valid),
                           example_index, holds, 10)
  np.testing.assert_allclose(np.asarray(got), alpha * nll + beta, rtol=1e-5)
