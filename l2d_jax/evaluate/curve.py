"""Accuracy–cost curves: the reachable front, the area under the F1–cost curve, the gap recovered.

A curve is a list of allocation rows (`baselines.allocation_row`), one per beta
scale of the rejector sweep or per threshold of the cascade. Its cost axis is
the mean consultation fee per question (`fee`, cost units). Any mixture of two
allocations is reachable (send each question to one or the other at random),
and every metric of the mixture is the same mixture of theirs; so the segment
between any two points is reachable too. A curve's front (`pareto_front`) is
therefore that of its points and their mixtures, the non-dominated part of
their upper concave envelope, and its F1 at a cost is read on that front
interpolated.

Conventions at the ends:
  - the best F1 reachable at cost <= c (`best_f1_at`) is undefined (nan) below
    the cheapest front point and, beyond the most expensive one, that point's
    F1 (spending more buys nothing);
  - the AUC divides costs by the most expensive agent's mean fee, so they lie
    in [0, 1], extends the front flat at both ends (its first F1 down to cost
    0, its last F1 up to cost 1) and integrates by trapezoids: a curve of one
    point with F1 f has AUC f.
"""

from collections.abc import Sequence

import numpy as np

from l2d_jax.evaluate.baselines import METRICS

GAP_FRACTIONS = (0.25, 0.5, 0.75)


def pareto_front(cost_P: np.ndarray, f1_P: np.ndarray) -> np.ndarray:
  """Indices of the points on the front of what the points and their mixtures reach, by cost.

  A point is on it when no other point, and no mixture of two others, has
  lower or equal cost and higher F1: the non-dominated points that lie on
  their upper concave envelope. A non-dominated point under the segment
  between two others is left out, since mixing those two beats it at its own
  cost; so is one on such a segment, which adds nothing. Of points with equal
  cost only the best F1 stays, and of a tie in both the first listed. Costs
  and F1 strictly increase along the front and its slopes strictly decrease.
  """
  cost_P, f1_P = np.asarray(cost_P, np.float64), np.asarray(f1_P, np.float64)
  front, best_f1 = [], -np.inf
  for i in np.lexsort((-f1_P, cost_P)):
    if f1_P[i] <= best_f1:
      continue  # dominated
    best_f1 = f1_P[i]
    while len(front) >= 2:  # drop the last point unless it is above the segment to this one
      a, b = front[-2], front[-1]
      above = (f1_P[b] - f1_P[a]) * (cost_P[i] - cost_P[a])
      on_segment = (f1_P[i] - f1_P[a]) * (cost_P[b] - cost_P[a])
      if above > on_segment + 1e-12 * abs(on_segment):  # rounding: on the segment is not above
        break
      front.pop()
    front.append(int(i))
  return np.asarray(front, np.int64)


def best_f1_at(cost_F: np.ndarray, f1_F: np.ndarray, cost: float) -> float:
  """The best F1 reachable at mean cost <= `cost` on the interpolated front (nan below it)."""
  if cost < cost_F[0]:
    return float("nan")
  return float(np.interp(cost, cost_F, f1_F))


def area_under_curve(cost_F: np.ndarray, f1_F: np.ndarray, max_cost: float) -> float:
  """The area under the front's F1 over cost / `max_cost` from 0 to 1, flat beyond its ends."""
  if not max_cost > 0:
    raise ValueError(f"the AUC needs a positive most expensive agent's cost, got {max_cost}")
  x_F = np.asarray(cost_F, np.float64) / max_cost
  knots = np.unique(np.concatenate([[0.0, 1.0], np.clip(x_F, 0.0, 1.0)]))
  return float(np.trapezoid(np.interp(knots, x_F, f1_F), knots))


def gap_recovered(cost_F: np.ndarray, f1_F: np.ndarray, *, f1_main: float, f1_best: float,
                  best_cost: float, fractions: Sequence[float] = GAP_FRACTIONS) -> dict:
  """The share of the main-to-best-agent F1 gap the front recovers at fractions of the best's cost.

  For each fraction q, at cost c = q * best_cost: `{"cost": c, "f1": F1(c),
  "recovered": (F1(c) - f1_main) / (f1_best - f1_main)}` keyed "25%" etc.,
  with F1(c) = `best_f1_at(c)`. `f1` and `recovered` are None where F1(c) is
  undefined, and `recovered` also where the best agent is no better than the
  main model (no gap).
  """
  gap = f1_best - f1_main
  out = {}
  for q in fractions:
    cost = q * best_cost
    f1 = best_f1_at(cost_F, f1_F, cost)
    defined = np.isfinite(f1)
    out[f"{q:.0%}"] = {"cost": float(cost), "f1": f1 if defined else None,
                       "recovered": float((f1 - f1_main) / gap) if defined and gap > 0 else None}
  return out


def row_at_cost(front_rows: Sequence[dict], cost: float) -> dict | None:
  """The best mixture of front allocations at mean fee <= `cost`: metrics and shares interpolated.

  `front_rows` are allocation rows along a Pareto front (increasing fee). The
  result mixes the two rows around `cost` (the last row beyond the front);
  None below the cheapest row, where nothing is reachable.
  """
  cost_F = np.array([row["fee"] for row in front_rows])
  if cost < cost_F[0]:
    return None
  upper = min(int(np.searchsorted(cost_F, cost, side="right")), len(cost_F) - 1)
  lower = max(upper - 1, 0)
  span = cost_F[upper] - cost_F[lower]
  weight = float(np.clip((cost - cost_F[lower]) / span, 0.0, 1.0)) if span > 0 else 1.0
  a, b = front_rows[lower], front_rows[upper]
  row = {k: (1 - weight) * a[k] + weight * b[k] for k in METRICS}
  row["shares"] = {name: (1 - weight) * a["shares"][name] + weight * b["shares"][name]
                   for name in a["shares"]}
  return row


def summarize(rows: Sequence[dict], *, max_cost: float, f1_main: float, f1_best: float,
              best_cost: float) -> dict:
  """A curve's points, Pareto front (index, fee, F1 of each front point), AUC and gap recovered."""
  if not rows:
    raise ValueError("a curve needs at least one point")
  index_F = pareto_front([r["fee"] for r in rows], [r["f1"] for r in rows])
  cost_F = np.array([rows[i]["fee"] for i in index_F])
  f1_F = np.array([rows[i]["f1"] for i in index_F])
  return {
      "points": list(rows),
      "pareto_front": [{"index": int(i), "fee": float(c), "f1": float(f)}
                       for i, c, f in zip(index_F, cost_F, f1_F)],
      "auc": area_under_curve(cost_F, f1_F, max_cost),
      "gap_recovered": gap_recovered(cost_F, f1_F, f1_main=f1_main, f1_best=f1_best,
                                     best_cost=best_cost),
  }


def front_rows(summary: dict) -> list[dict]:
  """The allocation rows on a summarised curve's Pareto front, by increasing fee."""
  return [summary["points"][p["index"]] for p in summary["pareto_front"]]
