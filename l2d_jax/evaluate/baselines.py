"""What an allocation of test questions to agents achieves, and the baselines to measure it by.

Everything here is a pure function of per-question numpy tables (an
`AgentTable`) and returns plain dicts of floats, ready for JSON. An allocation
is measured by what the agents it picks achieve on their questions: EM, F1, the
mean consultation fee per question (cost units: `fee_j`, before any beta
scale), the mean FLOPs per question, the share of questions sent to each agent,
and the true deferral loss, the mean cost `alpha_j * loss_j + beta_scale *
fee_j` of the chosen agent.

The baselines:
  random   the shares of a given allocation, with the questions assigned at
           random. The row holds the exact expectation (per question, the
           share-weighted mean over agents), which has the same expected fee
           as the allocation; sampled draws are optional and only summarised.
  cascade  a main model (agent 0 by default) answers when its confidence (its
           best-span probability) is at least a threshold, otherwise an expert
           answers. Only the main model's confidence is read (it decides whether
           to defer), so the chain has a single step: every deferred question
           goes to one expert. Every other agent is tried in turn as the expert
           (by default), so the cascade's curve is the front over all of them;
           a report joins the cascades from every model agent (`report`).
           The main model runs on every question (its confidence decides), so
           a deferred question costs its fee and FLOPs as well as the expert's.
  oracle   the cheapest agent per question (ties to the lowest index, as in
           `defer.policy.bayes_allocation`): the lower bound of the deferral loss.

Deciding is paid alike: the cascade pays its main model as above, and the
rejector's rows (`rejector_row`) pay the rejector's own fee and FLOPs on every
question. The random baseline needs no decision and pays none. These show in
`fee` and `flops`; the deferral loss stays the cost of the agent that answered.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

METRICS = ("em", "f1", "fee", "flops", "deferral_loss")


@dataclasses.dataclass(frozen=True)
class AgentTable:
  """Every agent's per-question scores on the test split, and what consulting each agent costs.

  Attributes:
    names: the agents, `[J]`; agent 0 is the main model.
    em_ExJ: exact match per question and agent, in [0, 1].
    f1_ExJ: F1 per question and agent, in [0, 1].
    loss_ExJ: the configured loss type's per-question loss (1 - F1, 1 - EM or span NLL).
    fee_J: the consultation fee per question in cost units (beta_j before the scale).
    flops_J: FLOPs per question.
    alpha_J: the loss weight per agent (a scalar is broadcast).
    beta_scale: the fee scale of the configured costs `alpha * loss + beta_scale * fee`.
  """
  names: Sequence[str]
  em_ExJ: np.ndarray
  f1_ExJ: np.ndarray
  loss_ExJ: np.ndarray
  fee_J: np.ndarray
  flops_J: np.ndarray
  alpha_J: np.ndarray | float
  beta_scale: float = 1.0

  def __post_init__(self):
    names = tuple(str(n) for n in self.names)
    if not names or len(set(names)) != len(names):
      raise ValueError(f"AgentTable.names must be non-empty and unique, got {names}")
    num_agents = len(names)
    object.__setattr__(self, "names", names)
    for field in ("em_ExJ", "f1_ExJ", "loss_ExJ"):
      table = np.asarray(getattr(self, field), np.float64)
      if table.ndim != 2 or table.shape[1] != num_agents or table.shape[0] == 0:
        raise ValueError(f"AgentTable.{field} must have shape [E >= 1, {num_agents}], "
                         f"got {table.shape}")
      if not np.all(np.isfinite(table)):
        e, j = np.argwhere(~np.isfinite(table))[0]
        raise ValueError(f"AgentTable.{field} is not finite at question {e}, agent {names[j]!r}")
      object.__setattr__(self, field, table)
    if self.em_ExJ.shape != self.loss_ExJ.shape or self.f1_ExJ.shape != self.loss_ExJ.shape:
      raise ValueError(f"AgentTable tables differ in shape: em {self.em_ExJ.shape}, "
                       f"f1 {self.f1_ExJ.shape}, loss {self.loss_ExJ.shape}")
    for field in ("em_ExJ", "f1_ExJ"):
      table = getattr(self, field)
      if table.min() < 0 or table.max() > 1:
        raise ValueError(f"AgentTable.{field} must lie in [0, 1] (not percentages), "
                         f"got [{table.min()}, {table.max()}]")
    for field in ("fee_J", "flops_J", "alpha_J"):
      values = np.broadcast_to(np.asarray(getattr(self, field), np.float64), (num_agents,)).copy()
      if not np.all(np.isfinite(values)) or values.min() < 0:
        raise ValueError(f"AgentTable.{field} must be finite and non-negative, got {values}")
      object.__setattr__(self, field, values)
    if not (np.isfinite(self.beta_scale) and self.beta_scale >= 0):
      raise ValueError(f"AgentTable.beta_scale must be finite and non-negative, "
                       f"got {self.beta_scale}")

  @property
  def num_questions(self) -> int:
    return self.loss_ExJ.shape[0]

  @property
  def num_agents(self) -> int:
    return len(self.names)

  def costs_ExJ(self) -> np.ndarray:
    """The configured costs `alpha_j * loss_j + beta_scale * fee_j`, `[E, J]`."""
    return self.alpha_J * self.loss_ExJ + self.beta_scale * self.fee_J


def mixture_row(weights_ExJ: np.ndarray, table: AgentTable) -> dict:
  """The metrics of a randomised allocation: question e goes to agent j with probability w_ej.

  Every metric is linear in the weights, so this is the exact expectation; a
  one-hot `weights_ExJ` is a plain allocation.
  """
  shares_J = weights_ExJ.mean(axis=0)
  return {
      "em": float(np.sum(weights_ExJ * table.em_ExJ, axis=1).mean()),
      "f1": float(np.sum(weights_ExJ * table.f1_ExJ, axis=1).mean()),
      "fee": float(shares_J @ table.fee_J),
      "flops": float(shares_J @ table.flops_J),
      "deferral_loss": float(np.sum(weights_ExJ * table.costs_ExJ(), axis=1).mean()),
      "shares": {name: float(s) for name, s in zip(table.names, shares_J)},
  }


def allocation_row(alloc_E: np.ndarray, table: AgentTable) -> dict:
  """EM, F1, mean fee and FLOPs, shares per agent and true deferral loss of an allocation `[E]`."""
  alloc_E = np.asarray(alloc_E)
  if alloc_E.shape != (table.num_questions,) or not np.issubdtype(alloc_E.dtype, np.integer):
    raise ValueError(f"an allocation must be integer agent indices of shape "
                     f"({table.num_questions},), got {alloc_E.dtype} {alloc_E.shape}")
  if alloc_E.min() < 0 or alloc_E.max() >= table.num_agents:
    raise ValueError(f"an allocation's agent indices must lie in [0, {table.num_agents}), "
                     f"got [{alloc_E.min()}, {alloc_E.max()}]")
  return mixture_row(np.eye(table.num_agents)[alloc_E], table)


def agent_rows(table: AgentTable) -> list[dict]:
  """Each agent answering every question: EM, F1, fee, FLOPs and deferral loss (its mean cost)."""
  rows = []
  for j, name in enumerate(table.names):
    row = allocation_row(np.full(table.num_questions, j), table)
    rows.append({"agent": name, **{k: row[k] for k in METRICS}})
  return rows


def random_allocation(shares_J: np.ndarray, table: AgentTable, seeds: Sequence[int] = ()) -> dict:
  """Questions assigned at random with the given shares: the exact expectation, plus sampled draws.

  The row's metrics are the expectation (what the report uses). Each seed in
  `seeds` draws one allocation with the shares' exact counts (largest
  remainder rounding) in a random order; `sampled` then holds the seeds and
  the mean and standard deviation of EM, F1 and deferral loss over the draws.
  """
  shares_J = np.asarray(shares_J, np.float64)
  if (shares_J.shape != (table.num_agents,) or shares_J.min() < 0
      or not np.isclose(shares_J.sum(), 1.0)):
    raise ValueError(f"shares must be {table.num_agents} non-negative numbers summing to 1, "
                     f"got {shares_J}")
  row = mixture_row(np.broadcast_to(shares_J, table.loss_ExJ.shape), table)
  if seeds:
    draws = [allocation_row(_draw(shares_J, table.num_questions, seed), table) for seed in seeds]
    row["sampled"] = {"seeds": [int(s) for s in seeds]}
    for key in ("em", "f1", "deferral_loss"):
      values = np.array([d[key] for d in draws])
      row["sampled"][f"{key}_mean"] = float(values.mean())
      row["sampled"][f"{key}_std"] = float(values.std())
  return row


def gain_over_random(alloc_E: np.ndarray, table: AgentTable) -> dict:
  """How much an allocation beats random allocation with its own shares, with standard errors.

  Per question, the allocation's F1 (and cost) minus the exact expectation of
  random allocation at the same shares; the gain is the mean of these paired
  differences and `*_se` its standard error over the test questions (n - 1 in
  the variance), conditional on the shares: it measures how much of the gain
  the sampling of questions could explain.
  Positive `f1` and negative `deferral_loss` favour the allocation.
  """
  row = allocation_row(alloc_E, table)
  shares_J = np.array(list(row["shares"].values()))
  chosen_E = np.asarray(alloc_E)
  questions = np.arange(table.num_questions)
  gain = {}
  for key, values_ExJ in (("f1", table.f1_ExJ), ("deferral_loss", table.costs_ExJ())):
    diff_E = values_ExJ[questions, chosen_E] - values_ExJ @ shares_J
    gain[key] = float(diff_E.mean())
    gain[f"{key}_se"] = (float(diff_E.std(ddof=1) / np.sqrt(len(diff_E)))
                         if len(diff_E) > 1 else None)
  return gain


def _draw(shares_J: np.ndarray, num_questions: int, seed: int) -> np.ndarray:
  """A random allocation whose counts per agent are the shares rounded by largest remainder."""
  exact_J = shares_J * num_questions
  counts_J = np.floor(exact_J).astype(int)
  remainder = num_questions - counts_J.sum()
  counts_J[np.argsort(-(exact_J - counts_J), kind="stable")[:remainder]] += 1
  alloc_E = np.repeat(np.arange(len(shares_J)), counts_J)
  return np.random.default_rng(seed).permutation(alloc_E)


def quantile_thresholds(conf_E: np.ndarray, num: int = 21) -> np.ndarray:
  """Thresholds from "the main model answers all" to "the expert answers all".

  The `num` evenly spaced quantiles of the confidences (the lowest keeps every
  question with the main model) and the next float above the largest
  confidence (defers every question; finite, so it stays valid JSON), sorted,
  duplicates removed.
  """
  conf_E = np.asarray(conf_E, np.float64)
  levels = np.linspace(0.0, 1.0, num)
  return np.unique(np.append(np.quantile(conf_E, levels), np.nextafter(conf_E.max(), np.inf)))


def cascade_allocation(conf_E: np.ndarray, threshold: float, expert: int,
                       main: int = 0) -> np.ndarray:
  """`main` where its confidence is at least `threshold`, `expert` elsewhere, `int32[E]`."""
  return np.where(np.asarray(conf_E) >= threshold, main, expert).astype(np.int32)


def cascade(conf_E: np.ndarray, table: AgentTable, thresholds_T: np.ndarray | None = None,
            experts: Sequence[int] | None = None, main: int = 0) -> list[dict]:
  """The confidence-threshold cascade from `main` per expert and threshold: allocation rows.

  Args:
    conf_E: the main model's confidence per question (best-span probability).
    table: the agents' test scores and costs.
    thresholds_T: the thresholds; by default `quantile_thresholds(conf_E)`.
    experts: the agents that may answer the deferred questions, one cascade
      each; by default every agent but the main model.
    main: the main model, the agent whose confidence decides.

  Returns:
    One row per (expert, threshold), experts in the given order: the allocation
    row plus `main` and `expert` (their names) and `threshold`.
  """
  conf_E = np.asarray(conf_E, np.float64)
  if conf_E.shape != (table.num_questions,) or not np.all(np.isfinite(conf_E)):
    raise ValueError(f"conf_E must be {table.num_questions} finite confidences, "
                     f"got shape {conf_E.shape}")
  if not 0 <= main < table.num_agents:
    raise ValueError(f"the cascade's main model must be an agent index in "
                     f"[0, {table.num_agents}), got {main}")
  others = [j for j in range(table.num_agents) if j != main]
  experts = others if experts is None else experts
  if not experts or any(j not in others for j in experts):
    raise ValueError(f"the cascade's experts must be agent indices other than its main model "
                     f"{main}, in [0, {table.num_agents}), got {list(experts)}")
  if thresholds_T is None:
    thresholds_T = quantile_thresholds(conf_E)
  return [{"main": table.names[main], "expert": table.names[j], "threshold": float(t),
           **cascade_row(cascade_allocation(conf_E, t, j, main), table, main)}
          for j in experts for t in thresholds_T]


def cascade_row(alloc_E: np.ndarray, table: AgentTable, main: int = 0) -> dict:
  """The allocation row of a cascade: `main` was also paid on every question it passed on.

  `shares` stay who answered; `fee` and `flops` add the main model's for the
  deferred share.
  """
  deferred = float(np.mean(np.asarray(alloc_E) != main))
  return _with_overhead(allocation_row(alloc_E, table), deferred, float(table.fee_J[main]),
                        float(table.flops_J[main]))


def rejector_row(alloc_E: np.ndarray, table: AgentTable, fee: float = 0.0,
                 flops: float = 0.0, paid: Sequence[int] = ()) -> dict:
  """The allocation row of a rejector whose own forward pass costs `fee` and `flops` per question.

  It runs on every question before the chosen agent does, and so do the agents
  `paid` whose features it reads: each is paid on the questions not routed to
  it too (a question routed to it pays it once). `shares` stay who answered.
  """
  row = allocation_row(alloc_E, table)
  for j in paid:
    row = _with_overhead(row, 1.0 - row["shares"][table.names[j]], float(table.fee_J[j]),
                         float(table.flops_J[j]))
  return _with_overhead(row, 1.0, fee, flops)


def routing_fees(fee_J: np.ndarray, fee: float = 0.0, paid: Sequence[int] = ()
                 ) -> tuple[float, np.ndarray]:
  """How `rejector_row` prices a question: its fixed fee, and what each route adds to it.

  The fixed part is the rejector's own `fee` and the fees of the agents `paid`
  (run on every question); routing to one of those adds nothing, to any other
  agent its fee.
  """
  route_fee_J = np.array(fee_J, np.float64)
  fixed = float(fee) + float(route_fee_J[list(paid)].sum())
  route_fee_J[list(paid)] = 0.0
  return fixed, route_fee_J


def _with_overhead(row: dict, share: float, fee: float, flops: float) -> dict:
  """`row` with `fee` and `flops` paid on a `share` of the questions.

  The deferral loss stays the cost of the agent that answered, as the method
  defines it; what deciding costs shows in the fee, the curves' cost axis.
  """
  row["fee"] += share * fee
  row["flops"] += share * flops
  return row


def oracle(table: AgentTable) -> dict:
  """The allocation row of the cheapest agent per question (the Bayes allocation)."""
  return allocation_row(np.argmin(table.costs_ExJ(), axis=1), table)
