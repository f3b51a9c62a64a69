"""Independent float64 reference for the Learning-to-Defer allocation and comp-sum loss.

Written from the textbook definitions only (not from the package sources), with
explicit loops over agents, so that tests can compare the vectorised JAX code
against something obviously literal. Used by tests only.

Definitions, for one example with J agents (j = 0..J-1), costs c_j >= 0 and
rejector logits r_j:

* Allocation: argmax_j r_j, ties to the lowest index.
* True deferral loss: c at the allocated agent.
* Bayes (oracle) allocation: argmin_j c_j, ties to the lowest index.
* Comp-sum surrogate:
    L_u(r, c) = sum_j tau_j * Psi_u(sum_{j' != j} exp(r_j' - r_j)),
    tau_j = sum_{i != j} c_i,
    Psi_1(v) = log(1 + v),
    Psi_u(v) = ((1 + v)^(1 - u) - 1) / (1 - u) for u != 1.
"""

import math
from collections.abc import Sequence

import numpy as np


def _floats(values: Sequence[float]) -> list[float]:
  """Converts a 1-D sequence (list, tuple or array row) to Python floats."""
  return [float(v) for v in values]


def allocate_one(logits: Sequence[float]) -> int:
  """Returns argmax_j r_j, the lowest index among ties.

  Args:
    logits: the J rejector logits of one example.

  Returns:
    The allocated agent index.
  """
  r = _floats(logits)
  best = 0
  for j in range(1, len(r)):
    if r[j] > r[best]:  # Strict: an equal later value never displaces an earlier one.
      best = j
  return best


def true_deferral_loss_one(logits: Sequence[float], costs: Sequence[float]) -> float:
  """Returns the cost of the agent that `allocate_one` picks.

  Args:
    logits: the J rejector logits of one example.
    costs: the J agent costs of the same example.

  Returns:
    c at the allocated agent.
  """
  return float(costs[allocate_one(logits)])


def bayes_allocation_one(costs: Sequence[float]) -> int:
  """Returns argmin_j c_j, the lowest index among ties.

  Args:
    costs: the J agent costs of one example.

  Returns:
    The oracle agent index.
  """
  c = _floats(costs)
  best = 0
  for j in range(1, len(c)):
    if c[j] < c[best]:  # Strict: ties stay with the earlier index.
      best = j
  return best


def psi(v: float, u: float) -> float:
  """The comp-sum transform Psi_u(v).

  Args:
    v: the non-negative sum of exp(r_j' - r_j) over j' != j.
    u: the comp-sum exponent.

  Returns:
    log(1 + v) when u == 1, else ((1 + v)^(1 - u) - 1) / (1 - u).
  """
  v = float(v)
  u = float(u)
  if u == 1.0:
    return math.log(1.0 + v)
  return ((1.0 + v) ** (1.0 - u) - 1.0) / (1.0 - u)


def tau_one(costs: Sequence[float]) -> list[float]:
  """Returns tau_j = sum_{i != j} c_i for each agent j.

  Args:
    costs: the J agent costs of one example.

  Returns:
    The J weights tau_j.
  """
  c = _floats(costs)
  num_agents = len(c)
  return [math.fsum(c[i] for i in range(num_agents) if i != j) for j in range(num_agents)]


def comp_sum_loss_one(logits: Sequence[float], costs: Sequence[float], u: float) -> float:
  """The comp-sum surrogate L_u(r, c) of one example, literally as defined.

  Args:
    logits: the J rejector logits r_j.
    costs: the J agent costs c_j.
    u: the comp-sum exponent.

  Returns:
    sum_j tau_j * Psi_u(sum_{j' != j} exp(r_j' - r_j)).
  """
  r = _floats(logits)
  c = _floats(costs)
  if len(r) != len(c):
    raise ValueError(f"{len(r)} logits but {len(c)} costs")
  num_agents = len(r)
  tau = tau_one(c)
  terms = []
  for j in range(num_agents):
    v = math.fsum(math.exp(r[jp] - r[j]) for jp in range(num_agents) if jp != j)
    terms.append(tau[j] * psi(v, u))
  return math.fsum(terms)


def allocate(logits) -> np.ndarray:
  """Batched `allocate_one` over the rows of a [B, J] array; int64[B]."""
  return np.array([allocate_one(row) for row in np.asarray(logits, np.float64)], np.int64)


def true_deferral_loss(logits, costs) -> np.ndarray:
  """Batched `true_deferral_loss_one` over the rows of [B, J] arrays; float64[B]."""
  logits = np.asarray(logits, np.float64)
  costs = np.asarray(costs, np.float64)
  return np.array([true_deferral_loss_one(r, c) for r, c in zip(logits, costs)], np.float64)


def bayes_allocation(costs) -> np.ndarray:
  """Batched `bayes_allocation_one` over the rows of a [B, J] array; int64[B]."""
  return np.array([bayes_allocation_one(row) for row in np.asarray(costs, np.float64)], np.int64)


def comp_sum_loss(logits, costs, u: float) -> np.ndarray:
  """Batched `comp_sum_loss_one` over the rows of [B, J] arrays; float64[B]."""
  logits = np.asarray(logits, np.float64)
  costs = np.asarray(costs, np.float64)
  if logits.shape != costs.shape or logits.ndim != 2:
    raise ValueError(f"expected matching [B, J] arrays, got {logits.shape} and {costs.shape}")
  return np.array([comp_sum_loss_one(r, c, u) for r, c in zip(logits, costs)], np.float64)
