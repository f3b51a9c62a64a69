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
  keeps only a few digits of it. Here the leading agent gets `log1p` of its
  (small) competition sum, and the others `m + log(exp(-m) + sum exp(d - m))`
  with `m` their largest positive gap, which neither cancels nor overflows.
  """
  num_agents = logits_BxJ.shape[-1]
  gaps_BxJxJ = logits_BxJ[:, None, :] - logits_BxJ[:, :, None]  # [b, j, j'] = r_j' - r_j
  others_JxJ = ~jnp.eye(num_agents, dtype=bool)
  top_BxJ = jnp.max(jnp.where(others_JxJ, gaps_BxJxJ, -jnp.inf), axis=-1)
  shift_BxJ = jnp.maximum(top_BxJ, 0.0)
  sum_BxJ = jnp.sum(jnp.where(others_JxJ, jnp.exp(gaps_BxJxJ - shift_BxJ[..., None]), 0.0),
                    axis=-1)
  leading = jnp.log1p(sum_BxJ)
  trailing = shift_BxJ + jnp.log(jnp.exp(-shift_BxJ) + sum_BxJ)
  return jnp.where(top_BxJ <= 0.0, leading, trailing)


def comp_sum_loss(logits_BxJ: jax.Array, costs_BxJ: jax.Array,
                  u: jax.Array | float) -> jax.Array:
  """The comp-sum surrogate per example, `[B]`.

  Costs only weight the terms: no gradient flows into them (they come from the
  agent store, not from the rejector).
  """
  logits_BxJ = _float(logits_BxJ)
  costs_BxJ = jax.lax.stop_gradient(_float(costs_BxJ))
  # tau_j = sum_{i != j} c_i as a sum of the others, not `sum(c) - c_j`: the
  # subtraction loses tau_j's digits when c_j dominates (a tiny tau_j then
  # weights a large Psi_j, so its relative error shows in the loss).
  num_agents = costs_BxJ.shape[-1]
  others_JxJ = 1.0 - jnp.eye(num_agents, dtype=costs_BxJ.dtype)
  tau_BxJ = jnp.einsum("bi,ij->bj", costs_BxJ, others_JxJ,
                       precision=jax.lax.Precision.HIGHEST)
  log_ratio_BxJ = log1p_competition(logits_BxJ)
  return jnp.sum(tau_BxJ * psi(log_ratio_BxJ, u), axis=-1)


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
