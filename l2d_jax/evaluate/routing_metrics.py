"""The routing literature's measures of an accuracy–cost curve: RouterBench's AIQ, RouteLLM's APGR.

Both papers route between LLMs; here the agents are the LLMs, F1 is the
quality and the mean fee per question (the report's `fee`, deciding included)
the cost. Every curve is read on its front (`curve.pareto_front`): its points
and their random mixtures, non-decreasing in F1 and concave, which is what
RouterBench calls the non-decreasing convex hull.

The multi-agent pool maps onto the papers' terms as follows:
  weak agent     the cheapest agent (lowest fee; of equal fees the higher F1,
                 then the lower index): RouteLLM's weak model;
  strong agent   the best agent (highest F1, ties to the lower index, the
                 report's `best_agent`): RouteLLM's strong model;
  cost range     [c_min, c_max] from the cheapest to the dearest agent's fee,
                 the same for every curve so their AIQs compare.
Any allocation can be mixed with sending questions straight to the weak or
the strong agent, deciding nothing and reading nothing (a coin before the
router). So each curve's front F(c) is that of its points and of the weak and
the strong agent alone, (c_weak, q_weak) = (c_min, q_weak) and (c_strong,
q_strong), interpolated in between and flat beyond its dearest point
(spending more buys nothing). In the papers routing is free, so a router's
own points already run from all-weak to all-strong; a router that pays for
what it reads (the rejector reading an agent's features, a cascade's main
model) pays more for each allocation than the same allocation unread, and
the two ends restore both ends of its curve: below its cheapest point, and
up to the strong agent's fee, where otherwise it could never match the
strong agent alone at the strong agent's own fee. (The report's own curve
summaries, `curve`'s AUC and gap recovered and the cascade at the
rejector's fee, read each curve's points alone.)

  AIQ      = 1 / (c_max - c_min) * integral_{c_min}^{c_max} F(c) dc: the mean F1
             of the front over the cost range (Hu et al. 2024, "RouterBench: A
             Benchmark for Multi-LLM Routing System", arXiv:2403.12031, Sec. 3;
             withmartian/routerbench, evaluation/AIQ.py). The agents' own front,
             the best random mixtures of single agents, is RouterBench's "Zero
             router": a router whose AIQ does not exceed it has learned nothing
             that mixing agents at random would not give.
  PGR(c)   = (F(c) - q_weak) / (q_strong - q_weak): the performance gap recovered.
  APGR     = 1 / (c_strong - c_weak) * integral_{c_weak}^{c_strong} PGR(c) dc
             (Ong et al. 2024, "RouteLLM: Learning to Route LLMs with Preference
             Data", arXiv:2406.18665, Sec. 2; lm-sys/RouteLLM,
             routellm/evals/evaluate.py). RouteLLM's cost axis is the share of
             calls to the strong model, from 0 to 1; mixing the weak and the
             strong agent with free routing, that share is exactly
             (c - c_weak) / (c_strong - c_weak), so this is its average with the fee as
             the cost.
  CPT(x)   = the least fee c with PGR(c) >= x (call-performance threshold),
             reported as `fee` and as that strong-call `fraction`. Every front
             reaches the strong agent, so it is None only for x > 1.
APGR and CPT are None when the strong agent is no better than the weak one (no
gap); AIQ is None when every agent has the same fee (no range).
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from l2d_jax.evaluate import curve as curve_lib

CPT_LEVELS = (0.5, 0.8)


@dataclasses.dataclass(frozen=True)
class CostAxis:
  """The weak and strong agents and the cost range every curve of one report is read over.

  Attributes:
    weak, strong: the weak and the strong agent's names (see the module doc).
    c_min, c_max: the cheapest and the dearest agent's fee (the AIQ's range).
    c_weak, q_weak, c_strong, q_strong: the weak and strong agents' fee and F1.
  """
  weak: str
  strong: str
  c_min: float
  c_max: float
  c_weak: float
  q_weak: float
  c_strong: float
  q_strong: float

  @classmethod
  def from_agents(cls, names: Sequence[str], fee_J: Sequence[float],
                  f1_J: Sequence[float]) -> "CostAxis":
    """The axis of a pool whose agents alone have these fees and F1s."""
    fee_J, f1_J = np.asarray(fee_J, np.float64), np.asarray(f1_J, np.float64)
    if not len(names) == len(fee_J) == len(f1_J) >= 1:
      raise ValueError(f"CostAxis needs one fee and one F1 per agent, got {len(names)} names, "
                       f"{len(fee_J)} fees, {len(f1_J)} F1s")
    agents = range(len(names))
    weak = min(agents, key=lambda j: (fee_J[j], -f1_J[j], j))
    strong = max(agents, key=lambda j: (f1_J[j], -j))
    return cls(weak=names[weak], strong=names[strong], c_min=float(fee_J.min()),
               c_max=float(fee_J.max()), c_weak=float(fee_J[weak]), q_weak=float(f1_J[weak]),
               c_strong=float(fee_J[strong]), q_strong=float(f1_J[strong]))

  @classmethod
  def from_rows(cls, agent_rows: Sequence[dict]) -> "CostAxis":
    """The axis of a report's agent rows (`agent`, `fee` and `f1` each)."""
    return cls.from_agents([row["agent"] for row in agent_rows],
                           [row["fee"] for row in agent_rows], [row["f1"] for row in agent_rows])

  def front(self, fee_P: Sequence[float], f1_P: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(cost, F1) of the front of the points and the weak and strong agents alone, by cost."""
    cost_P = np.concatenate([[self.c_weak, self.c_strong], np.asarray(fee_P, np.float64)])
    quality_P = np.concatenate([[self.q_weak, self.q_strong], np.asarray(f1_P, np.float64)])
    index_F = curve_lib.pareto_front(cost_P, quality_P)
    return cost_P[index_F], quality_P[index_F]


def mean_over(cost_F: np.ndarray, f1_F: np.ndarray, lo: float, hi: float) -> float:
  """The mean of the interpolated front over [lo, hi] (flat beyond its ends), integrated exactly."""
  inside = cost_F[(cost_F > lo) & (cost_F < hi)]
  knots = np.concatenate([[lo], inside, [hi]])
  return float(np.trapezoid(np.interp(knots, cost_F, f1_F), knots) / (hi - lo))


def cost_to_reach(cost_F: np.ndarray, f1_F: np.ndarray, quality: float) -> float | None:
  """The least cost at which the front reaches `quality` (None if it never does)."""
  reached = np.flatnonzero(f1_F >= quality)
  if not reached.size:
    return None
  i = int(reached[0])
  if i == 0:
    return float(cost_F[0])
  step = (quality - f1_F[i - 1]) / (f1_F[i] - f1_F[i - 1])
  return float(cost_F[i - 1] + step * (cost_F[i] - cost_F[i - 1]))


def summarize(fee_P: Sequence[float], f1_P: Sequence[float], axis: CostAxis,
              levels: Sequence[float] = CPT_LEVELS) -> dict:
  """AIQ, APGR and CPT at each level (keyed "50%"...) of a curve given by its points."""
  cost_F, f1_F = axis.front(fee_P, f1_P)
  aiq = mean_over(cost_F, f1_F, axis.c_min, axis.c_max) if axis.c_max > axis.c_min else None
  gap = axis.q_strong - axis.q_weak
  if not gap > 0:
    return {"aiq": aiq, "apgr": None, "cpt": {f"{x:.0%}": None for x in levels}}
  apgr = (mean_over(cost_F, f1_F, axis.c_weak, axis.c_strong) - axis.q_weak) / gap
  cpt = {}
  for x in levels:
    cost = cost_to_reach(cost_F, f1_F, axis.q_weak + x * gap)
    cpt[f"{x:.0%}"] = None if cost is None else {
        "fee": cost, "fraction": (cost - axis.c_weak) / (axis.c_strong - axis.c_weak)}
  return {"aiq": aiq, "apgr": apgr, "cpt": cpt}
