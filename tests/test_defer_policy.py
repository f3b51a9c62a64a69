"""Tests for l2d_jax.defer.policy: allocations, the true deferral loss, the Bayes oracle."""

import jax
import jax.numpy as jnp
import numpy as np

from l2d_jax.defer import policy


def test_allocate_is_argmax_with_ties_to_lowest_index():
  logits = jnp.array([[0.1, 2.0, -1.0], [3.0, 3.0, 1.0], [0.0, 0.5, 0.5]])
  alloc = policy.allocate(logits)
  assert alloc.dtype == jnp.int32
  np.testing.assert_array_equal(np.asarray(alloc), [1, 0, 1])


def test_bayes_allocation_is_argmin_with_ties_to_cheapest_listed():
  costs = jnp.array([[0.4, 0.2, 0.9], [0.3, 0.3, 0.3], [1.0, 0.5, 0.5]])
  alloc = policy.bayes_allocation(costs)
  assert alloc.dtype == jnp.int32
  np.testing.assert_array_equal(np.asarray(alloc), [1, 0, 1])


def test_true_deferral_loss_is_cost_of_chosen_agent():
  logits = jnp.array([[0.1, 2.0, -1.0], [3.0, 3.0, 1.0], [-5.0, 0.0, 7.0]])
  costs = jnp.array([[0.4, 0.25, 0.9], [0.3, 0.1, 0.3], [1.0, 0.5, 0.75]])
  np.testing.assert_array_equal(np.asarray(policy.true_deferral_loss(logits, costs)),
                                np.array([0.25, 0.3, 0.75], np.float32))


def test_random_inputs_match_numpy_and_oracle_is_a_lower_bound():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(64, 4)).astype(np.float32)
  costs = rng.uniform(size=(64, 4)).astype(np.float32)
  loss = np.asarray(jax.jit(policy.true_deferral_loss)(logits, costs))
  np.testing.assert_array_equal(loss, costs[np.arange(64), logits.argmax(1)])
  oracle = np.asarray(policy.true_deferral_loss(-costs, costs))
  np.testing.assert_array_equal(oracle, costs.min(1))
  np.testing.assert_array_equal(np.asarray(policy.bayes_allocation(costs)), costs.argmin(1))
  assert np.all(oracle <= loss)


def test_allocation_shares():
  alloc = jnp.array([0, 2, 2, 1, 2, 0, 2, 2], jnp.int32)
  np.testing.assert_allclose(np.asarray(policy.allocation_shares(alloc, 4)),
                             [0.25, 0.125, 0.625, 0.0])
  weights = jnp.array([1, 1, 1, 1, 0, 0, 0, 0], jnp.float32)
  np.testing.assert_allclose(np.asarray(jax.jit(policy.allocation_shares, static_argnums=1)(
      alloc, 4, weights)), [0.25, 0.25, 0.5, 0.0])
  np.testing.assert_array_equal(np.asarray(policy.allocation_shares(alloc, 3, jnp.zeros(8))), 0.0)
