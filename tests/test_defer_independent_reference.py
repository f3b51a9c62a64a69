"""The deferral policy and comp-sum surrogate against an independent float64 reference.

The reference (tests/reference/l2d_reference.py) is written from the definitions
alone, with explicit loops over agents; here the package's JAX functions are fed
random float32 inputs and compared with it, plus tie cases and hand-computed values.
"""

import importlib.util
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2d_jax.defer.policy import allocate, bayes_allocation, true_deferral_loss
from l2d_jax.defer.surrogate import comp_sum_loss


def _load_reference():
  """Imports tests/reference/l2d_reference.py by path (tests/ is not a package)."""
  path = pathlib.Path(__file__).resolve().parent / "reference" / "l2d_reference.py"
  spec = importlib.util.spec_from_file_location("l2d_reference", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


ref = _load_reference()

AGENTS = (2, 3, 5, 8)
EXPONENTS = (0.0, 0.25, 0.5, 1.0, 1.7, 2.0, 4.0)
RTOL = 1e-5
# One batch shape per agent count, so that each shape is compiled once.
BATCH = 100
KINDS = ("uniform", "normal", "peaked", "close")


def _random_logits(rng: np.random.Generator, batch: int, num_agents: int, kind: str) -> np.ndarray:
  """float32 logits with |r| <= 8, drawn in one of a few shapes of distribution."""
  if kind == "uniform":
    out = rng.uniform(-8.0, 8.0, size=(batch, num_agents))
  elif kind == "normal":
    out = np.clip(rng.normal(0.0, 2.5, size=(batch, num_agents)), -8.0, 8.0)
  elif kind == "peaked":  # One agent clearly ahead: the v of that agent is small.
    out = rng.uniform(-8.0, 0.0, size=(batch, num_agents))
    out[np.arange(batch), rng.integers(0, num_agents, size=batch)] = rng.uniform(4.0, 8.0, batch)
  elif kind == "close":  # All logits within 0.05 of each other.
    out = rng.uniform(-1.0, 1.0, size=(batch, 1)) + rng.uniform(-0.025, 0.025, (batch, num_agents))
  else:
    raise ValueError(kind)
  return out.astype(np.float32)


def _random_costs(rng: np.random.Generator, batch: int, num_agents: int) -> np.ndarray:
  """float32 costs, uniform in [0, 2]."""
  return rng.uniform(0.0, 2.0, size=(batch, num_agents)).astype(np.float32)


def _tie_logits(rng: np.random.Generator, batch: int, num_agents: int) -> np.ndarray:
  """`batch` rows: hand-made tie rows, then integer logits in {-1, 0, 1} (many ties)."""
  rows = [np.zeros(num_agents),  # All equal: agent 0.
          np.full(num_agents, 3.5),
          np.r_[np.full(num_agents - 1, -2.0), 5.0],  # Single maximum at the end.
          np.r_[1.0, np.zeros(num_agents - 2), 1.0],  # Tie between first and last.
          np.r_[0.0, np.full(num_agents - 1, 2.0)]]  # Tie among all but the first.
  random = rng.integers(-1, 2, size=(batch - len(rows), num_agents)).astype(np.float64)
  return np.concatenate([np.stack(rows), random]).astype(np.float32)


def _tie_costs(rng: np.random.Generator, batch: int, num_agents: int) -> np.ndarray:
  """`batch` rows: hand-made tie rows, then integer costs in {0, 1, 2} (many ties)."""
  rows = [np.zeros(num_agents),
          np.ones(num_agents),
          np.r_[np.full(num_agents - 1, 2.0), 0.0],
          np.r_[0.5, np.ones(num_agents - 2), 0.5],
          np.r_[1.0, np.full(num_agents - 1, 0.0)]]
  random = rng.integers(0, 3, size=(batch - len(rows), num_agents)).astype(np.float64)
  return np.concatenate([np.stack(rows), random]).astype(np.float32)


def _project_loss_padded(logits: np.ndarray, costs: np.ndarray, u: float) -> np.ndarray:
  """`comp_sum_loss` on a few rows, padded to BATCH rows to reuse the compiled shape."""
  rows = logits.shape[0]
  pad = np.arange(BATCH) % rows
  out = comp_sum_loss(jnp.asarray(logits[pad]), jnp.asarray(costs[pad]), u)
  assert np.asarray(out).shape == (BATCH,)
  return np.asarray(out)[:rows]


def _assert_loss_close(logits: np.ndarray, costs: np.ndarray, u: float, got) -> None:
  """Checks `got` against the reference row by row, naming the failing rows."""
  got = np.asarray(got)
  want = ref.comp_sum_loss(logits, costs, u)
  assert got.shape == want.shape, (got.shape, want.shape)
  bad = ~(np.abs(got.astype(np.float64) - want) <= RTOL * np.abs(want))
  if bad.any():
    lines = [f"u={u}: {int(bad.sum())}/{len(want)} rows beyond rtol={RTOL}"]
    for b in np.flatnonzero(bad)[:5]:
      lines.append(f"  row {b}: logits={logits[b].tolist()} costs={costs[b].tolist()} "
                   f"got={float(got[b])!r} reference={float(want[b])!r}")
    pytest.fail("\n".join(lines))


# Comp-sum surrogate.


@pytest.mark.parametrize("u", EXPONENTS)
@pytest.mark.parametrize("num_agents", AGENTS)
def test_comp_sum_loss_matches_reference(num_agents, u):
  rng = np.random.default_rng(1000 * num_agents + int(round(100 * u)))
  for kind in KINDS:
    logits = _random_logits(rng, BATCH, num_agents, kind)
    costs = _random_costs(rng, BATCH, num_agents)
    got = comp_sum_loss(jnp.asarray(logits), jnp.asarray(costs), u)
    _assert_loss_close(logits, costs, u, got)


@pytest.mark.parametrize("num_agents, u", [(3, 1.0), (8, 0.5)])
def test_comp_sum_loss_under_jit_matches_reference(num_agents, u):
  rng = np.random.default_rng(77 + num_agents)
  logits = _random_logits(rng, BATCH, num_agents, "uniform")
  costs = _random_costs(rng, BATCH, num_agents)
  got = jax.jit(lambda r, c: comp_sum_loss(r, c, u))(jnp.asarray(logits), jnp.asarray(costs))
  _assert_loss_close(logits, costs, u, got)


@pytest.mark.parametrize("u", EXPONENTS)
def test_comp_sum_loss_on_tied_logits_matches_reference(u):
  rng = np.random.default_rng(5)
  num_agents = 5
  logits = _tie_logits(rng, BATCH, num_agents)
  costs = _random_costs(rng, BATCH, num_agents)
  got = comp_sum_loss(jnp.asarray(logits), jnp.asarray(costs), u)
  _assert_loss_close(logits, costs, u, got)


def test_comp_sum_loss_small_tau_next_to_large_cost():
  """A row the random search turned up: tau_1 = c_0 is tiny beside c_1 and v_1 is large.

  tau_1 = c_0 = 0.00334 while c_1 = 1.348; the loss is dominated by tau_1 * v_1
  (v_1 = exp(6.82) ~ 916), so an absolute float32 error in tau_1 of the order of
  eps * (c_0 + c_1) (as from forming tau_j as sum(c) - c_j) is ~1e-5 relative in
  the loss. Summing the other costs directly keeps it near 1e-7.
  """
  logits = np.asarray([[-0.6175916790962219, -7.437441349029541]], np.float32)
  costs = np.asarray([[0.0033404366113245487, 1.347913384437561]], np.float32)
  _assert_loss_close(logits, costs, 0.0, _project_loss_padded(logits, costs, 0.0))


_LOG2 = math.log(2.0)

# (logits, costs, u, value worked out by hand).
_HAND_VALUES = [
    # J=2, r=(0,0), c=(1,3): tau=(3,1), v=(1,1).
    ((0.0, 0.0), (1.0, 3.0), 1.0, 4.0 * _LOG2),  # Psi_1(1) = log 2.
    ((0.0, 0.0), (1.0, 3.0), 0.0, 4.0),  # Psi_0(v) = v.
    ((0.0, 0.0), (1.0, 3.0), 2.0, 2.0),  # Psi_2(v) = v / (1 + v) = 1/2.
    ((0.0, 0.0), (1.0, 3.0), 0.5, 8.0 * (math.sqrt(2.0) - 1.0)),  # Psi_.5(v) = 2(sqrt(1+v) - 1).
    ((0.0, 0.0), (1.0, 3.0), 4.0, 4.0 * (1.0 - 2.0**-3) / 3.0),  # Psi_4(1) = (1 - 1/8) / 3.
    # J=2, r=(log 2, 0), c=(1,3): tau=(3,1), v=(1/2, 2).
    ((_LOG2, 0.0), (1.0, 3.0), 1.0, 3.0 * math.log(1.5) + math.log(3.0)),
    ((_LOG2, 0.0), (1.0, 3.0), 0.0, 3.0 * 0.5 + 2.0),
    # J=3, r=(0,0,0), c=(1,2,3): tau=(5,4,3), v=2 each.
    ((0.0, 0.0, 0.0), (1.0, 2.0, 3.0), 1.0, 12.0 * math.log(3.0)),
    ((0.0, 0.0, 0.0), (1.0, 2.0, 3.0), 2.0, 12.0 * (2.0 / 3.0)),
    # Zero costs: tau = 0 everywhere, loss 0 whatever the logits.
    ((3.0, -1.0, 0.5), (0.0, 0.0, 0.0), 1.0, 0.0),
]


@pytest.mark.parametrize("logits, costs, u, value", _HAND_VALUES)
def test_comp_sum_loss_hand_values(logits, costs, u, value):
  assert ref.comp_sum_loss_one(logits, costs, u) == pytest.approx(value, rel=1e-12, abs=1e-12)
  got = _project_loss_padded(np.asarray([logits], np.float32), np.asarray([costs], np.float32), u)
  assert float(got[0]) == pytest.approx(value, rel=RTOL, abs=1e-6)


# Allocation, true deferral loss and Bayes allocation.


@pytest.mark.parametrize("num_agents", AGENTS)
def test_allocate_and_true_loss_match_reference(num_agents):
  rng = np.random.default_rng(31 + num_agents)
  cases = [_random_logits(rng, BATCH, num_agents, kind) for kind in KINDS]
  cases.append(_tie_logits(rng, BATCH, num_agents))
  for logits in cases:
    costs = _random_costs(rng, logits.shape[0], num_agents)
    got = allocate(jnp.asarray(logits))
    assert got.dtype == jnp.int32, got.dtype
    np.testing.assert_array_equal(np.asarray(got), ref.allocate(logits))
    loss = true_deferral_loss(jnp.asarray(logits), jnp.asarray(costs))
    assert np.asarray(loss).shape == (logits.shape[0],)
    # Picking one entry is exact, so the float32 value must equal the chosen cost.
    np.testing.assert_array_equal(np.asarray(loss, np.float64),
                                  ref.true_deferral_loss(logits, costs))


@pytest.mark.parametrize("num_agents", AGENTS)
def test_bayes_allocation_matches_reference(num_agents):
  rng = np.random.default_rng(57 + num_agents)
  for costs in (_random_costs(rng, BATCH, num_agents), _tie_costs(rng, BATCH, num_agents)):
    got = bayes_allocation(jnp.asarray(costs))
    assert got.dtype == jnp.int32, got.dtype
    np.testing.assert_array_equal(np.asarray(got), ref.bayes_allocation(costs))


@pytest.mark.parametrize("num_agents", AGENTS)
def test_true_loss_at_bayes_logits_is_the_minimum_cost(num_agents):
  """Logits = -costs allocate the Bayes agent, so the true loss is min_j c_j."""
  rng = np.random.default_rng(91 + num_agents)
  costs = np.concatenate([_random_costs(rng, BATCH, num_agents),
                          _tie_costs(rng, BATCH, num_agents)])
  logits = -costs
  np.testing.assert_array_equal(np.asarray(allocate(jnp.asarray(logits))),
                                ref.bayes_allocation(costs))
  loss = true_deferral_loss(jnp.asarray(logits), jnp.asarray(costs))
  np.testing.assert_array_equal(np.asarray(loss, np.float64), costs.min(axis=1).astype(np.float64))


def test_hand_allocations():
  logits = jnp.asarray([[0.0, 0.0], [1.0, 2.0], [2.0, -1.0]], jnp.float32)
  np.testing.assert_array_equal(np.asarray(allocate(logits)), [0, 1, 0])
  costs = jnp.asarray([[1.0, 3.0], [2.0, 2.0], [4.0, 0.5]], jnp.float32)
  np.testing.assert_array_equal(np.asarray(bayes_allocation(costs)), [0, 0, 1])
  loss = true_deferral_loss(jnp.asarray([[0.0, 0.0], [1.0, 2.0], [3.0, -3.0]], jnp.float32), costs)
  np.testing.assert_array_equal(np.asarray(loss), np.asarray([1.0, 2.0, 4.0], np.float32))
  three = jnp.asarray([[5.0, 5.0, 1.0], [0.0, 3.0, 3.0], [-1.0, -2.0, -0.5]], jnp.float32)
  np.testing.assert_array_equal(np.asarray(allocate(three)), [0, 1, 2])
