"""The comp-sum family of surrogate losses for learning to defer.

A rejector scores the J agents of the pool with logits `r_j(x)` and routes each
query to `argmax_j r_j`. Its training loss is the cost-weighted comp-sum
surrogate

  L_u(r, c) = sum_j tau_j * Psi_u(sum_{j' != j} exp(r_j' - r_j)),
  tau_j = sum_{i != j} c_i,

with `Psi_1(v) = log(1 + v)` and `Psi_u(v) = ((1 + v)^(1 - u) - 1) / (1 - u)`
otherwise (u = 0: sum-exponential, u = 2: MAE-like `1 - softmax_j`). Its
minimizer over free logits puts the largest logit on the cheapest agent, so
training it approximates the Bayes allocation `argmin_j c_j`.

Everything is written in terms of the log-ratio `s_j = log(1 + v_j) =
-log_softmax_j(r)`, computed by `log1p_competition` accurately for any logits. For u < 1 the
loss grows like `exp((1 - u) * s_j)`, which overflows float32 once a logit gap
reaches a few tens; beyond `(1 - u) * s_j > LINEAR_BEYOND` the function is
continued by its tangent (first-order Taylor expansion in the exponent), so the
value and gradient stay finite and the gradient keeps its direction. For u > 1
the loss saturates at `1 / (u - 1)` and its gradient vanishes for large gaps;
that is the function itself, not a numerical artefact.

`u` may be a traced scalar (no Python branching on it), so one compiled
program can `jax.vmap` over several values of u.
"""

import jax
import jax.numpy as jnp

# Exponent (1 - u) * s beyond which Psi_u, u < 1, is continued linearly: the
# exact form holds while softmax_j(r) >= exp(-20 / (1 - u)), i.e. down to
# about 2e-9 for the sum-exponential loss (u = 0), and the slope stays at
# exp(20) ~ 4.9e8 times the cost weight.
LINEAR_BEYOND = 20.0


def _float(x: jax.Array) -> jax.Array:
  """Promotes to at least float32: losses are never computed in bf16."""
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def psi(log1p_v: jax.Array, u: jax.Array | float) -> jax.Array:
  """`Psi_u(v)` given `log(1 + v)`, elementwise, for any u (a traced scalar is fine).

  Taking `log(1 + v)` rather than `v` keeps the value exact when `1 + v` is
  far outside float32 range (it is `1 / softmax`). For u < 1 the value is
  continued linearly in the exponent beyond `LINEAR_BEYOND` (see the module
  docstring); for u = 1 it is `log1p_v` itself.
  """
  log1p_v = _float(log1p_v)
  one_minus_u = 1.0 - jnp.asarray(u, log1p_v.dtype)
  is_log = one_minus_u == 0.0
  exponent = one_minus_u * log1p_v
  # expm1 up to the threshold, then its tangent there; both pieces stay finite
  # so no NaN can leak through the unselected branch of `where` in the gradient.
  continued = (jnp.expm1(jnp.minimum(exponent, LINEAR_BEYOND)) +
               jnp.exp(LINEAR_BEYOND) * jnp.maximum(exponent - LINEAR_BEYOND, 0.0))
  power = continued / jnp.where(is_log, 1.0, one_minus_u)
  return jnp.where(is_log, log1p_v, power)


def log1p_competition(logits_BxJ: jax.Array) -> jax.Array:
  """`s_j = log(1 + sum_{j' != j} exp(r_j' - r_j))` (= -log_softmax_j), accurate for every j.

  `-log_softmax` computes `s_j` as `logsumexp(r) - r_j`, a difference of two
  nearly equal numbers for the leading agent, where `s_j` is tiny: float32 then
  keeps only a few digits of it. Here, with `m = max_j r_j` reached at agent
  `a` and `S = sum_{j != a} exp(r_j - m)`, every `s_j` is a sum of two
  non-negative terms, `(m - r_j) + log1p(S)`, which neither cancels nor
  overflows; the leading agent's is `log1p(S)` itself. It is O(J) per example
  and runs in the logits' dtype (`comp_sum_loss` promotes to float32 first).

  `m` is held constant for differentiation and agent a's own term enters as
  `expm1(r_a - m)` (value 0, slope 1), so the gradient is `softmax - onehot_j`
  exactly, ties included.
  """
  return jnp.moveaxis(_log1p_competition_JxB(jnp.moveaxis(logits_BxJ, -1, 0)), 0, -1)


def _log1p_competition_JxB(logits_JxB: jax.Array) -> jax.Array:
  """`log1p_competition` with the agent axis first.

  Agents are few, examples many: with agents on the major axis every
  reduction over agents is an elementwise pass over rows of examples, which
  XLA vectorizes (about 1.7x faster on a CPU than reducing a minor axis of 4).
  """
  max_1xB = jax.lax.stop_gradient(jnp.max(logits_JxB, axis=0, keepdims=True))
  is_top_JxB = jax.nn.one_hot(jnp.argmax(logits_JxB, axis=0), logits_JxB.shape[0],
                              dtype=bool, axis=0)
  below_JxB = logits_JxB - max_1xB  # <= 0
  others_1xB = jnp.sum(jnp.where(is_top_JxB, 0.0, jnp.exp(below_JxB)), axis=0, keepdims=True)
  top_1xB = jnp.sum(jnp.where(is_top_JxB, jnp.expm1(below_JxB), 0.0), axis=0, keepdims=True)
  return jnp.log1p(top_1xB + others_1xB) - below_JxB


def comp_sum_loss(logits_BxJ: jax.Array, costs_BxJ: jax.Array,
                  u: jax.Array | float) -> jax.Array:
  """The comp-sum surrogate per example, `[B]`.

  Costs only weight the terms: no gradient flows into them (they come from the
  agent store, not from the rejector). Computed with the agent axis first
  (see `_log1p_competition_JxB`).
  """
  logits_JxB = jnp.moveaxis(_float(logits_BxJ), -1, 0)
  costs_JxB = jnp.moveaxis(jax.lax.stop_gradient(_float(costs_BxJ)), -1, 0)
  # tau_j = sum_{i != j} c_i as a sum of the others, not `sum(c) - c_j`: the
  # subtraction loses tau_j's digits when c_j dominates (a tiny tau_j then
  # weights a large Psi_j, so its relative error shows in the loss). Unrolled
  # over the (few) agents, it is J - 1 elementwise additions per agent (J^2 in
  # the program), which fuse with the rest; a matmul by `1 - eye(J)` and
  # running sums from both ends both took longer on a CPU.
  num_agents = costs_JxB.shape[0]
  zero_B = jnp.zeros_like(costs_JxB[0])
  tau_JxB = jnp.stack([sum((costs_JxB[i] for i in range(num_agents) if i != j), zero_B)
                       for j in range(num_agents)])
  return jnp.sum(tau_JxB * psi(_log1p_competition_JxB(logits_JxB), u), axis=0)


def mean_comp_sum_loss(logits_BxJ: jax.Array, costs_BxJ: jax.Array, u: jax.Array | float,
                       weights_B: jax.Array | None = None) -> jax.Array:
  """The batch objective: the (weighted) mean of `comp_sum_loss`, a scalar.

  `weights_B` (e.g. 0 for padding rows of a batch that had to be filled up to
  split evenly over devices) makes the mean ignore those rows; an all-zero
  weight vector gives 0.
  """
  loss_B = comp_sum_loss(logits_BxJ, costs_BxJ, u)
  if weights_B is None:
    return jnp.mean(loss_B)
  weights_B = _float(weights_B)
  total = jnp.sum(weights_B)
  weighted = jnp.sum(jnp.where(weights_B > 0, weights_B * loss_B, 0.0))
  return jnp.where(total > 0, weighted / jnp.where(total > 0, total, 1.0), 0.0)
