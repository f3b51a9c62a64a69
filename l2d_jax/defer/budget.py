"""Budgets users can set: a target mean fee, or a cap on one agent's share, as an operating point.

A trained rejector routes each question to `argmax_j r_j(x)`, wherever its
training cost put it on the accuracy–cost trade-off. A budget moves it with
one additive offset per agent: route by `argmax_j (r_j(x) + offset_J[j])`,
ties to the lowest index as `policy.allocate`. Two kinds, one per budget:

  fee=F             offset_J = -lam * fee_J. For lam1 < lam2 a question's chosen
                    fee can only fall or stay (adding the two optimality
                    conditions gives (lam2 - lam1) * (fee_1 - fee_2) >= 0), so the
                    mean fee is non-increasing in lam; lam is the smallest, the
                    most spending, whose mean fee is at most F, found by
                    bisection. lam < 0 spends more than the rejector would.
  share:NAME<=S     offset_J = -delta on agent NAME alone, delta >= 0 the smallest
                    with NAME's share at most S (0 when it already is).

The mean fee is what a question costs in all, in the report's fee units:
`fixed_fee`, paid on every question whatever the route (the rejector's own
forward pass, and any agent whose outputs it reads), plus `fee_J[j]` of the
agent it is routed to (what routing to j adds). The offsets are chosen on a
`Calibration`: the rejector's logits on questions it never trained on (the
validation articles carved out of rejector_train), and then applied unchanged
to any other question, where the fee and shares they realise differ from the
calibration's by sampling error (`OperatingPoint.standard_error`) and by
whatever sets those questions apart (other articles, harder ones). No label
enters, so the calibration may also be the very questions to route, whose
fee or share then meets the budget as closely as their number allows
(`route --budget-on batch`, the report's `batch` rows, `fee_sweep`). The
logits may come from any rejector, whatever it reads: only `[E, J]` logits
and the fees enter here.

Questions come in articles, and an article shifts what the offsets spend on
all of its questions at once (how sure the agents are of its answers). A
calibration that knows each question's article (`groups_E`) gives standard
errors clustered by article, which say how far another set of as many
articles may stray; without it each question is its own cluster, and the
error understates the shift to other articles.
"""

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from l2d_jax.errors import UserError

CALIBRATION_FORMAT_VERSION = 1
_SYNTAX = "'fee=F' (a target mean fee per question) or 'share:AGENT<=S' (S in [0, 1])"
_BISECTIONS = 200


class BudgetError(UserError, ValueError):
  """A budget that cannot be parsed, names no agent, or is out of the router's reach."""


@dataclasses.dataclass(frozen=True)
class Budget:
  """One budget: a target mean fee (`agent` None) or a cap on `agent`'s share."""
  spec: str
  kind: str
  value: float
  agent: str | None = None


def parse_budget(spec: str) -> Budget:
  """A `Budget` from "fee=1.2" or "share:human<=0.3"; BudgetError naming the spec otherwise."""
  text = spec.strip()
  if text.startswith("fee="):
    kind, agent, raw = "fee", None, text[len("fee="):]
  elif text.startswith("share:") and "<=" in text:
    agent, _, raw = text[len("share:"):].rpartition("<=")
    kind, agent = "share", agent.strip()
  else:
    raise BudgetError(f"budget {spec!r}: expected {_SYNTAX}")
  try:
    value = float(raw)
  except ValueError:
    raise BudgetError(f"budget {spec!r}: {raw.strip()!r} is not a number; expected "
                      f"{_SYNTAX}") from None
  if not math.isfinite(value) or value < 0 or (kind == "share" and value > 1) or agent == "":
    raise BudgetError(f"budget {spec!r}: expected {_SYNTAX}")
  return Budget(spec=text, kind=kind, value=value, agent=agent)


@dataclasses.dataclass(frozen=True)
class Calibration:
  """Held-out rejector logits and the fees that turn an allocation into a mean fee.

  Attributes:
    agent_names: the agents, `[J]`, in the rejector's output order.
    logits_ExJ: the rejector's logits on the calibration questions.
    fee_J: what routing a question to each agent adds to its fee.
    fixed_fee: what every question pays whatever its route.
    source: where the questions come from, for people reading it.
    groups_E: each question's article (any label), to cluster standard errors
      by; None: each question is its own.
  """
  agent_names: tuple[str, ...]
  logits_ExJ: np.ndarray
  fee_J: np.ndarray
  fixed_fee: float = 0.0
  source: str = ""
  groups_E: tuple[str, ...] | None = None

  def __post_init__(self):
    names = tuple(str(n) for n in self.agent_names)
    logits_ExJ = np.asarray(self.logits_ExJ, np.float64)
    fee_J = np.asarray(self.fee_J, np.float64)
    if not names or len(set(names)) != len(names):
      raise BudgetError(f"calibration agent names must be non-empty and distinct, got {names}")
    if logits_ExJ.ndim != 2 or logits_ExJ.shape[0] == 0 or logits_ExJ.shape[1] != len(names):
      raise BudgetError(f"calibration logits must have shape [E >= 1, {len(names)}], "
                        f"got {logits_ExJ.shape}")
    if not np.isfinite(logits_ExJ).all():
      raise BudgetError("calibration logits must be finite")
    if fee_J.shape != (len(names),) or not np.isfinite(fee_J).all() or fee_J.min() < 0:
      raise BudgetError(f"calibration fees must be {len(names)} finite non-negative numbers, "
                        f"got {fee_J}")
    if not (math.isfinite(self.fixed_fee) and self.fixed_fee >= 0):
      raise BudgetError(f"calibration fixed fee must be finite and non-negative, "
                        f"got {self.fixed_fee}")
    if self.groups_E is not None:
      groups_E = tuple(str(g) for g in self.groups_E)
      if len(groups_E) != logits_ExJ.shape[0]:
        raise BudgetError(f"calibration groups must name one article per question "
                          f"({logits_ExJ.shape[0]}), got {len(groups_E)}")
      object.__setattr__(self, "groups_E", groups_E)
    object.__setattr__(self, "agent_names", names)
    object.__setattr__(self, "logits_ExJ", logits_ExJ)
    object.__setattr__(self, "fee_J", fee_J)
    object.__setattr__(self, "fixed_fee", float(self.fixed_fee))

  @property
  def num_questions(self) -> int:
    return self.logits_ExJ.shape[0]

  def reachable_fees(self) -> tuple[float, float]:
    """The least and the largest mean fee: every question to the cheapest or the dearest agent."""
    return self.fixed_fee + float(self.fee_J.min()), self.fixed_fee + float(self.fee_J.max())

  def fees_E(self, alloc_E: np.ndarray) -> np.ndarray:
    """What each question costs in all under an allocation."""
    return self.fixed_fee + self.fee_J[alloc_E]

  def shares_J(self, alloc_E: np.ndarray) -> np.ndarray:
    return np.bincount(alloc_E, minlength=len(self.agent_names)) / len(alloc_E)

  def to_json(self) -> dict:
    """The record an export carries (`export.bundle.CALIBRATION_FILE`)."""
    record = {"format_version": CALIBRATION_FORMAT_VERSION, "source": self.source,
              "agents": list(self.agent_names), "fees": self.fee_J.tolist(),
              "fixed_fee": self.fixed_fee, "logits": self.logits_ExJ.tolist()}
    if self.groups_E is not None:
      record["groups"] = list(self.groups_E)
    return record

  @classmethod
  def from_json(cls, record: dict) -> "Calibration":
    """A calibration from its record; BudgetError naming what is missing or malformed."""
    if not isinstance(record, dict) or record.get("format_version") != CALIBRATION_FORMAT_VERSION:
      raise BudgetError(f"not a calibration record of format version "
                        f"{CALIBRATION_FORMAT_VERSION}")
    groups = record.get("groups")
    if groups is not None and not (isinstance(groups, list)
                                   and all(isinstance(g, str) for g in groups)):
      raise BudgetError("malformed calibration record: 'groups' must be a list of article "
                        "names")
    try:
      return cls(agent_names=tuple(record["agents"]), logits_ExJ=np.array(record["logits"]),
                 fee_J=np.array(record["fees"]), fixed_fee=float(record["fixed_fee"]),
                 source=str(record.get("source", "")), groups_E=groups)
    except (KeyError, TypeError, ValueError) as err:
      raise BudgetError(f"malformed calibration record: {err!r}") from None


def route(logits_ExJ: np.ndarray, offset_J: np.ndarray) -> np.ndarray:
  """The agent per question under the offsets, `int32[E]`: argmax, ties to the lowest index."""
  return np.argmax(np.asarray(logits_ExJ, np.float64) + offset_J, axis=1).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
  """A budget's offsets and what they realise on the calibration questions.

  Attributes:
    budget: the budget it meets.
    knob: lam (fee budgets) or delta (share caps), see the module doc.
    offset_J: the offset added to each agent's logit.
    fee: the mean fee per question on the calibration questions.
    shares_J: each agent's share of the calibration questions.
    standard_error: the standard error, at the calibration's size, of the
      realised mean fee (fee budgets) or of the capped agent's share, clustered
      by article where the calibration knows them: how far other questions may
      stray from `fee` or the share. None from a single cluster.
    num_questions: how many calibration questions it was chosen on.
  """
  budget: Budget
  knob: float
  offset_J: np.ndarray
  fee: float
  shares_J: np.ndarray
  standard_error: float | None
  num_questions: int

  def route(self, logits_ExJ: np.ndarray) -> np.ndarray:
    """The allocation of other questions (their logits `[E, J]`) under this operating point."""
    return route(logits_ExJ, self.offset_J)

  def to_json(self, agent_names: Sequence[str]) -> dict:
    knob = "lambda" if self.budget.kind == "fee" else "delta"
    return {"budget": self.budget.spec, knob: self.knob,
            "offsets": dict(zip(agent_names, map(float, self.offset_J))),
            "held_out": {"num_questions": self.num_questions, "fee": self.fee,
                         "shares": dict(zip(agent_names, map(float, self.shares_J))),
                         "standard_error": self.standard_error}}


def operating_point(budget: Budget | str, calibration: Calibration) -> OperatingPoint:
  """The offsets that meet `budget` on `calibration`'s questions (see the module doc).

  Raises BudgetError for a fee outside `calibration.reachable_fees()`, naming
  that range, or for a share cap on an agent that is not in the pool.
  """
  budget = parse_budget(budget) if isinstance(budget, str) else budget
  logits_ExJ, num_agents = calibration.logits_ExJ, len(calibration.agent_names)
  # Beyond this offset scale every question goes to the same extreme agent(s).
  spread = float(logits_ExJ.max() - logits_ExJ.min()) + 1.0
  if budget.kind == "fee":
    lo, hi = calibration.reachable_fees()
    if not lo <= budget.value <= hi:
      fixed = calibration.fixed_fee
      raise BudgetError(
          f"budget {budget.spec!r} is out of reach: this router's mean fee per question lies in "
          f"[{lo:.6g}, {hi:.6g}], from every question to the cheapest agent to every question "
          f"to the dearest" + (f" ({fixed:.6g} of it paid on every question)" if fixed else ""))
    fees = np.unique(calibration.fee_J)
    lam_max = spread / float(np.diff(fees).min()) if len(fees) > 1 else 0.0
    offset = lambda lam: -lam * calibration.fee_J
    mean_fee = lambda lam: float(calibration.fees_E(route(logits_ExJ, offset(lam))).mean())
    knob = _least_within(mean_fee, budget.value, -lam_max, lam_max)
  else:
    if budget.agent not in calibration.agent_names:
      raise BudgetError(f"budget {budget.spec!r} names no agent of this router: "
                        f"{', '.join(calibration.agent_names)}")
    k = calibration.agent_names.index(budget.agent)
    if num_agents == 1 and budget.value < 1:
      raise BudgetError(f"budget {budget.spec!r} is out of reach: {budget.agent!r} is the only "
                        "agent and answers every question")
    offset = lambda delta: -delta * np.eye(num_agents)[k]
    share = lambda delta: float(np.mean(route(logits_ExJ, offset(delta)) == k))
    knob = _least_within(share, budget.value, 0.0, spread)
  alloc_E = route(logits_ExJ, offset(knob))
  fees_E, shares_J = calibration.fees_E(alloc_E), calibration.shares_J(alloc_E)
  standard_error = clustered_standard_error(constrained_E(budget, calibration, alloc_E),
                                            calibration.groups_E)
  return OperatingPoint(budget=budget, knob=float(knob), offset_J=offset(knob),
                        fee=float(fees_E.mean()), shares_J=shares_J,
                        standard_error=standard_error, num_questions=calibration.num_questions)


def constrained_E(budget: Budget, calibration: Calibration, alloc_E: np.ndarray) -> np.ndarray:
  """What `budget` constrains, per question of `calibration` routed by `alloc_E`.

  Its fee in all (fee budgets), or 1 where it goes to the capped agent and 0
  elsewhere (share caps): their mean is the realised fee or share.
  """
  if budget.kind == "fee":
    return calibration.fees_E(alloc_E)
  return (np.asarray(alloc_E) == calibration.agent_names.index(budget.agent)).astype(np.float64)


def clustered_standard_error(values_E: np.ndarray,
                             groups_E: Sequence[str] | None = None) -> float | None:
  """The standard error of the mean of `values_E`, clustered by `groups_E` (None: one per value).

  The cluster-robust (sandwich) estimate: with G clusters, n values and
  residuals from their mean, sqrt(G / (G - 1) * sum_g (sum of g's residuals)^2)
  / n. With one value per cluster it is the sample standard deviation over
  sqrt(n). None from a single cluster, whose spread says nothing.
  """
  values_E = np.asarray(values_E, np.float64)
  if values_E.ndim != 1 or not len(values_E):
    raise ValueError(f"a standard error needs a non-empty vector of values, got shape "
                     f"{values_E.shape}")
  if groups_E is not None and len(groups_E) != len(values_E):
    raise ValueError(f"{len(groups_E)} groups for {len(values_E)} values")
  if groups_E is None:
    totals_G = values_E - values_E.mean()
  else:
    _, cluster_E = np.unique(np.asarray(groups_E), return_inverse=True)
    totals_G = np.bincount(cluster_E, weights=values_E - values_E.mean())
  num_clusters = len(totals_G)
  if num_clusters < 2:
    return None
  return float(math.sqrt(num_clusters / (num_clusters - 1) * np.sum(totals_G ** 2))
               / len(values_E))


def fee_sweep(calibration: Calibration, num_points: int) -> list[OperatingPoint]:
  """Operating points at `num_points` mean fees evenly spaced over the reachable range.

  The fee budgets of one router from its cheapest to its dearest allocation:
  the curve it traces by its fee offsets alone (for two agents, a threshold on
  its logit difference, as a cascade thresholds a confidence). On questions
  whose labels it never reads, e.g. a report's test logits, this is the
  router's accuracy–cost curve at no further training. Where every route
  costs the same (one agent, equal fees, or all of them paid anyway) there is
  nothing to sweep: one point.
  """
  if num_points < 2:
    raise ValueError(f"a fee sweep needs at least 2 points, got {num_points}")
  lo, hi = calibration.reachable_fees()
  fees = np.linspace(lo, hi, num_points) if hi > lo else [lo]
  return [operating_point(Budget(spec=f"fee={fee:.6g}", kind="fee", value=float(fee)),
                          calibration) for fee in fees]


def _least_within(value_of, target: float, lo: float, hi: float) -> float:
  """The least knob in [lo, hi] whose value is at most `target`, for a non-increasing `value_of`.

  `value_of(hi)` must be at most the target (the caller checks reachability);
  when `value_of(lo)` already is, `lo` is the answer. Otherwise bisection keeps
  `value_of(lo) > target >= value_of(hi)` until the two meet in floating point.
  "At most" forgives the rounding of a mean of equal fees.
  """
  within = lambda knob: value_of(knob) <= target + 1e-12 * max(1.0, abs(target))
  if within(lo):
    return lo
  for _ in range(_BISECTIONS):
    mid = 0.5 * (lo + hi)
    if mid in (lo, hi):
      break
    if within(mid):
      hi = mid
    else:
      lo = mid
  return hi
