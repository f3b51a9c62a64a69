"""What a budget's operating point realises on test, next to its target and its held-out figures.

A budget (`defer.budget`: "fee=1.2", "share:human<=0.3") is met on held-out
calibration questions by offsets on the rejector's logits; here the same
offsets route the test questions, and the row says what they achieve there, in
the report's terms: the rejector's allocation row (its own fee paid on every
question), its gain over random allocation with the same shares, and the
realised fee or capped share minus the target. A budget out of the router's
reach gets a row with its `error` instead, so one bad budget does not cost the
rest of the report.

Held-out articles are not the test articles: where the agents' confidence
differs between them, a fee met there is missed on test by more than sampling
error. A fee or share depends on the routes alone, not on any answer, so a
batch of questions can also be routed at offsets met on the batch itself
(`l2d-jax route --budget-on batch`); each row's `batch` entry is that, met on
the test questions' own logits with no label read.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from l2d_jax.defer import budget as budget_lib
from l2d_jax.evaluate import baselines


def budget_rows(specs: Sequence[str], calibration: budget_lib.Calibration,
                test_logits_ExJ: np.ndarray, table: baselines.AgentTable, *,
                rejector_fee: float = 0.0, rejector_flops: float = 0.0,
                rejector_paid: Sequence[int] = (),
                test_groups_E: Sequence[str] | None = None) -> list[dict]:
  """One row per budget: its operating point, held-out figures and what it realises on test.

  Each row's `batch` holds the same budget met on `test_logits_ExJ` themselves
  instead: its knob and what it realises there. `test_standard_error` is the
  standard error of the realised fee or share, clustered by `test_groups_E`
  (each test question's article; None: one cluster per question): a miss is
  read against it and the calibration's own.

  The calibration must price questions as the rejector's rows do
  (`baselines.routing_fees`: the table's fees per agent, `rejector_fee` and
  the fees of the agents `rejector_paid` on every question), else its
  held-out fee and the test fee would measure different things: ValueError.
  """
  fixed_fee, route_fee_J = baselines.routing_fees(table.fee_J, rejector_fee, rejector_paid)
  if (tuple(calibration.agent_names) != tuple(table.names)
      or not np.allclose(calibration.fee_J, route_fee_J)
      or not np.isclose(calibration.fixed_fee, fixed_fee)):
    raise ValueError(
        f"the budget calibration prices questions otherwise than the report: agents "
        f"{calibration.agent_names} fees {calibration.fee_J.tolist()} + {calibration.fixed_fee} "
        f"against {table.names} {route_fee_J.tolist()} + {fixed_fee}")
  test_logits_ExJ = np.asarray(test_logits_ExJ)
  if test_logits_ExJ.shape != (table.num_questions, table.num_agents):
    raise ValueError(f"test logits must have shape {(table.num_questions, table.num_agents)}, "
                     f"got {test_logits_ExJ.shape}")
  on_test = dataclasses.replace(calibration, logits_ExJ=test_logits_ExJ,
                                source="the test questions, labels unread",
                                groups_E=test_groups_E)
  rows = []
  for spec in specs:
    try:
      point = budget_lib.operating_point(spec, calibration)
    except budget_lib.BudgetError as err:
      rows.append({"budget": spec, "error": str(err)})
      continue
    on_batch = budget_lib.operating_point(spec, on_test)
    rows.append({**point.to_json(table.names), "kind": point.budget.kind,
                 "agent": point.budget.agent, "target": point.budget.value,
                 **_realised(point, on_test, table, rejector_fee, rejector_flops,
                             rejector_paid),
                 "batch": {**_knob(on_batch),
                           **_realised(on_batch, on_test, table, rejector_fee,
                                       rejector_flops, rejector_paid)}})
  return rows


def _knob(point: budget_lib.OperatingPoint) -> dict:
  """{"lambda": knob} of a fee budget, {"delta": knob} of a share cap."""
  return {"lambda" if point.budget.kind == "fee" else "delta": point.knob}


def _realised(point: budget_lib.OperatingPoint, on_test: budget_lib.Calibration,
              table: baselines.AgentTable, rejector_fee: float, rejector_flops: float,
              rejector_paid: Sequence[int]) -> dict:
  """`point`'s test row, its gain over random, and its fee or share minus target ± its SE."""
  alloc_E = point.route(on_test.logits_ExJ)
  test = baselines.rejector_row(alloc_E, table, rejector_fee, rejector_flops, rejector_paid)
  budget = point.budget
  realised = test["fee"] if budget.kind == "fee" else test["shares"][budget.agent]
  return {"test": test, "gain_over_random": baselines.gain_over_random(alloc_E, table),
          "test_minus_target": realised - budget.value,
          "test_standard_error": budget_lib.clustered_standard_error(
              budget_lib.constrained_E(budget, on_test, alloc_E), on_test.groups_E)}
