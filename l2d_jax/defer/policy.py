"""Allocation rules and the loss they incur: the rejector's, the Bayes oracle's.

The rejector routes each query to the agent with the largest logit; the true
deferral loss of that decision is the cost of the chosen agent. The Bayes
(oracle) allocation picks the cheapest agent per query, the lower bound every
rejector is measured against. Ties go to the lowest index in both rules, so the
agent listed first (agent 0, the cheap main model) wins them.
"""

import jax
import jax.numpy as jnp


def allocate(logits_BxJ: jax.Array) -> jax.Array:
  """The rejector's choice per query, `int32[B]`: argmax, ties to the lowest index."""
  return jnp.argmax(logits_BxJ, axis=-1).astype(jnp.int32)


def true_deferral_loss(logits_BxJ: jax.Array, costs_BxJ: jax.Array) -> jax.Array:
  """The cost of the agent the rejector picks, per query, `[B]`."""
  alloc_Bx1 = allocate(logits_BxJ)[:, None]
  return jnp.take_along_axis(costs_BxJ, alloc_Bx1, axis=-1)[:, 0]


def bayes_allocation(costs_BxJ: jax.Array) -> jax.Array:
  """The oracle's choice per query, `int32[B]`: the cheapest agent (ties to the lowest index)."""
  return jnp.argmin(costs_BxJ, axis=-1).astype(jnp.int32)


def allocation_shares(alloc_B: jax.Array, num_agents: int,
                      weights_B: jax.Array | None = None) -> jax.Array:
  """The fraction of queries routed to each agent, `[J]` (sums to 1).

  `weights_B` (e.g. 0 for padding rows) weights each query; all-zero weights
  give all-zero shares.
  """
  if weights_B is None:
    weights_B = jnp.ones(alloc_B.shape, jnp.float32)
  counts_J = jnp.bincount(alloc_B, weights=weights_B, length=num_agents)
  total = jnp.sum(counts_J)
  return counts_J / jnp.where(total > 0, total, 1.0)
