"""Tests for l2d_jax.defer.surrogate: the comp-sum surrogates against a naive float64 reference."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l2d_jax.defer import policy, surrogate

US = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)

# Jitted once with u traced: every u reuses one compiled program per shape.
comp_sum_loss = jax.jit(surrogate.comp_sum_loss)
mean_loss_and_grad = jax.jit(jax.value_and_grad(surrogate.mean_comp_sum_loss))


def _psi_reference(v: np.ndarray, u: float) -> np.ndarray:
  """Psi_u(v) straight from the definition, float64."""
  if u == 1.0:
    return np.log1p(v)
  return ((1.0 + v) ** (1.0 - u) - 1.0) / (1.0 - u)


def _comp_sum_reference(logits: np.ndarray, costs: np.ndarray, u: float) -> np.ndarray:
  """sum_j tau_j Psi_u(sum_{j' != j} exp(r_j' - r_j)), with explicit loops, float64."""
  logits, costs = logits.astype(np.float64), costs.astype(np.float64)
  batch, num_agents = logits.shape
  out = np.zeros(batch)
  for b in range(batch):
    for j in range(num_agents):
      tau = sum(costs[b, i] for i in range(num_agents) if i != j)
      v = sum(np.exp(logits[b, k] - logits[b, j]) for k in range(num_agents) if k != j)
      out[b] += tau * _psi_reference(v, u)
  return out


@pytest.mark.parametrize("u", US)
@pytest.mark.parametrize("num_agents", [2, 4, 7])
def test_comp_sum_matches_reference(u, num_agents):
  rng = np.random.default_rng(num_agents)
  logits = rng.normal(scale=2.0, size=(16, num_agents)).astype(np.float32)
  costs = rng.uniform(0.0, 2.0, size=(16, num_agents)).astype(np.float32)
  got = comp_sum_loss(jnp.asarray(logits), jnp.asarray(costs), u)
  assert got.shape == (16,) and got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), _comp_sum_reference(logits, costs, u), rtol=2e-5)


@pytest.mark.parametrize("u", US)
def test_psi_from_log1p_matches_definition(u):
  v = np.array([0.0, 1e-6, 0.3, 1.0, 7.5, 300.0, 1e6])
  got = jax.jit(surrogate.psi)(jnp.asarray(np.log1p(v), jnp.float32), u)
  np.testing.assert_allclose(np.asarray(got), _psi_reference(v, u), rtol=2e-5, atol=1e-6)


def test_named_members_of_the_family():
  # u = 0: v itself (sum-exponential); u = 2: 1 - softmax_j (MAE-like); u = 1: log(1 + v).
  logits = jnp.array([[0.3, -1.2, 2.0]])
  costs = jnp.array([[0.5, 1.0, 0.2]])
  tau = np.array([1.2, 0.7, 1.5])
  p = np.asarray(jax.nn.softmax(logits))[0]
  expected = {0.0: np.sum(tau * (1 / p - 1)), 1.0: np.sum(tau * -np.log(p)),
              2.0: np.sum(tau * (1 - p))}
  for u, value in expected.items():
    np.testing.assert_allclose(float(comp_sum_loss(logits, costs, u)[0]), value,
                               rtol=1e-5)


def test_linear_continuation_beyond_threshold():
  t = surrogate.LINEAR_BEYOND
  u = 0.5  # exponent = 0.5 * s
  s = np.array([2 * t - 1.0, 2 * t, 2 * t + 1.0, 2 * t + 100.0, 2e4])
  exponent = 0.5 * s
  expected = np.where(exponent <= t, np.expm1(np.minimum(exponent, t)),
                      np.expm1(t) + np.exp(t) * (exponent - t)) / 0.5
  got = jax.jit(surrogate.psi)(jnp.asarray(s, jnp.float32), u)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
  # Continuously differentiable at the threshold: both one-sided slopes are exp(t) * 1.
  slope = jax.jit(jax.vmap(jax.grad(surrogate.psi), in_axes=(0, None)))
  at = jnp.array([2 * t - 1e-3, 2 * t + 1e-3], jnp.float32)
  np.testing.assert_allclose(np.asarray(slope(at, u)), np.exp(t), rtol=1e-3)


@pytest.mark.parametrize("u", US)
def test_gradients_finite_and_directed_at_huge_logits(u):
  # The rejector is confidently wrong: agent 0 has the top logit, agent 1 is cheapest.
  logits = jnp.array([[1e4, -1e4, 0.0, -1e4],
                      [-1e4, -1e4, 1e4, 1e4],
                      [1e4, -1e4, -1e4, -1e4]], jnp.float32)
  costs = jnp.array([[1.0, 0.1, 0.5, 0.9],
                     [0.3, 0.1, 0.8, 0.9],
                     [0.7, 0.0, 0.6, 0.2]], jnp.float32)
  loss, grad = mean_loss_and_grad(logits, costs, u)
  assert np.isfinite(float(loss))
  grad = np.asarray(grad)
  assert np.all(np.isfinite(grad))
  if u <= 1.0:
    # Gradient descent raises the cheapest agent's logit and lowers the wrong winner's.
    assert np.all(grad[:, 1] < 0)
    assert grad[0, 0] > 0 and grad[1, 2] > 0 and grad[2, 0] > 0
  else:
    # u > 1 saturates at 1 / (u - 1) per term: bounded value, vanishing slope.
    assert float(loss) <= 3 * float(costs.sum(axis=1).max()) / (u - 1)


def test_log1p_competition_value_and_gradient_at_ties():
  # Tied top logits (all equal, as from a zero-initialized head, or two of them):
  # the value is -log_softmax and its gradient softmax - onehot, whichever agent
  # the argmax picks as the leader.
  logits = jnp.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, -2.0], [5.0, -3.0, 5.0, 5.0]])
  weights = jnp.arange(4.0)
  value = surrogate.log1p_competition(logits)
  grad = jax.grad(lambda r: jnp.sum(surrogate.log1p_competition(r) @ weights))(logits)
  softmax = np.asarray(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), np.float64)
  expected_value = -np.log(softmax)
  expected_grad = softmax * float(weights.sum()) - np.asarray(weights)[None, :]
  np.testing.assert_allclose(np.asarray(value), expected_value, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=1e-5, atol=1e-6)


def test_vmap_over_u_equals_loop():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
  costs = jnp.asarray(rng.uniform(size=(8, 4)), jnp.float32)
  us = jnp.asarray(US, jnp.float32)
  batched = jax.jit(jax.vmap(surrogate.comp_sum_loss, in_axes=(None, None, 0)))(logits, costs, us)
  looped = np.stack([np.asarray(comp_sum_loss(logits, costs, u)) for u in US])
  np.testing.assert_allclose(np.asarray(batched), looped, rtol=1e-6)
  grads = jax.jit(jax.vmap(jax.grad(surrogate.mean_comp_sum_loss), in_axes=(None, None, 0)))(
      logits, costs, us)
  for k, u in enumerate(US):
    _, grad = mean_loss_and_grad(logits, costs, u)
    np.testing.assert_allclose(np.asarray(grads[k]), np.asarray(grad), rtol=1e-5, atol=1e-7)


def _costs_with_margin(rng: np.random.Generator, num: int, num_agents: int) -> np.ndarray:
  """Random cost vectors whose cheapest agent beats the runner-up by at least 0.1."""
  rows = []
  while len(rows) < num:
    row = rng.uniform(0.0, 2.0, size=num_agents)
    low = np.sort(row)
    if low[1] - low[0] >= 0.1:
      rows.append(row)
  return np.stack(rows).astype(np.float32)


@pytest.mark.parametrize("num_agents", [2, 4])
def test_minimizing_over_free_logits_reaches_bayes_allocation(num_agents):
  costs = jnp.asarray(_costs_with_margin(np.random.default_rng(num_agents), 12, num_agents))
  optimizer = optax.adam(0.1)

  @jax.jit
  @jax.vmap
  def train(u):
    logits = jnp.zeros_like(costs)
    loss_grad = jax.grad(lambda r: jnp.sum(surrogate.comp_sum_loss(r, costs, u)))

    def step(carry, _):
      logits, state = carry
      updates, state = optimizer.update(loss_grad(logits), state)
      return (optax.apply_updates(logits, updates), state), None

    (logits, _), _ = jax.lax.scan(step, (logits, optimizer.init(logits)), length=300)
    return logits

  final = train(jnp.asarray(US, jnp.float32))
  bayes = np.asarray(policy.bayes_allocation(costs))
  for k, u in enumerate(US):
    np.testing.assert_array_equal(np.asarray(policy.allocate(final[k])), bayes, err_msg=f"u={u}")


def test_costs_get_no_gradient():
  logits = jnp.array([[0.1, 0.4, -0.3]])
  costs = jnp.array([[0.2, 0.9, 0.5]])
  grad = jax.jit(jax.grad(surrogate.mean_comp_sum_loss, argnums=1))(logits, costs, 1.0)
  np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_weighted_mean_ignores_padding_rows():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
  costs = jnp.asarray(rng.uniform(size=(6, 3)), jnp.float32)
  weights = jnp.array([1, 1, 1, 1, 0, 0], jnp.float32)
  mean_loss = jax.jit(surrogate.mean_comp_sum_loss)
  got = mean_loss(logits, costs, 0.5, weights)
  np.testing.assert_allclose(float(got), float(comp_sum_loss(logits, costs, 0.5)[:4].mean()),
                             rtol=1e-6)
  assert float(mean_loss(logits, costs, 0.5, jnp.zeros(6))) == 0.0


def test_bf16_logits_are_computed_in_float32():
  logits = jnp.array([[0.5, -1.0, 2.0]], jnp.bfloat16)
  costs = jnp.array([[0.3, 0.2, 0.9]], jnp.float32)
  got = comp_sum_loss(logits, costs, 0.0)
  assert got.dtype == jnp.float32
  expected = _comp_sum_reference(np.asarray(logits, np.float32), np.asarray(costs), 0.0)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
