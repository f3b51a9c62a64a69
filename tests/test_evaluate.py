"""Evaluation: exact values of agent rows, baselines, curves and the report on hand-made tables."""

import json
import math
import statistics
import types

import numpy as np
import pytest
from flax import nnx

from l2d_jax import config as config_lib
from l2d_jax import report_stage
from l2d_jax.defer import budget as budget_lib
from l2d_jax.evaluate import baselines, curve, plot, report
from l2d_jax.models import flops as flops_lib
from l2d_jax.models.config import EncoderConfig
from l2d_jax.rejector import text

# Six questions, three agents: a (main, cheap), b, c (best, expensive).
F1_ExJ = np.array([[1.0, 1.0, 1.0],
                   [0.0, 1.0, 1.0],
                   [0.0, 0.5, 1.0],
                   [0.5, 0.0, 1.0],
                   [0.0, 0.0, 0.0],
                   [1.0, 0.5, 0.5]])
CONF_E = np.array([0.9, 0.2, 0.4, 0.6, 0.1, 0.8])
# With beta scale 0.5 the costs (1 - F1) + 0.5 * fee are
#   q0 [0.05 0.20 0.50]  q1 [1.05 0.20 0.50]  q2 [1.05 0.70 0.50]
#   q3 [0.55 1.20 0.50]  q4 [1.05 1.20 1.50]  q5 [0.05 0.70 1.00]
ORACLE_E = np.array([0, 1, 2, 2, 0, 0])


def assert_close(actual, expected):
  """Nested dicts and lists of numbers equal up to float rounding (pytest.approx is flat)."""
  if isinstance(expected, dict):
    assert isinstance(actual, dict) and actual.keys() == expected.keys(), (actual, expected)
    for key, value in expected.items():
      assert_close(actual[key], value)
  elif isinstance(expected, list):
    assert isinstance(actual, list) and len(actual) == len(expected), (actual, expected)
    for a, e in zip(actual, expected):
      assert_close(a, e)
  elif expected is None or isinstance(expected, str):
    assert actual == expected
  else:
    assert actual == pytest.approx(expected)


def make_table(beta_scale: float = 0.5) -> baselines.AgentTable:
  return baselines.AgentTable(
      names=["a", "b", "c"], em_ExJ=(F1_ExJ == 1.0).astype(float), f1_ExJ=F1_ExJ,
      loss_ExJ=1.0 - F1_ExJ, fee_J=np.array([0.1, 0.4, 1.0]), flops_J=np.array([1.0, 4.0, 10.0]),
      alpha_J=1.0, beta_scale=beta_scale)


def test_agent_rows_exact():
  rows = baselines.agent_rows(make_table())
  assert [r["agent"] for r in rows] == ["a", "b", "c"]
  expected = [  # em, f1, fee, flops, deferral loss = mean(1 - F1) + 0.5 * fee
      (2 / 6, 2.5 / 6, 0.1, 1.0, 3.5 / 6 + 0.05),
      (2 / 6, 3.0 / 6, 0.4, 4.0, 3.0 / 6 + 0.2),
      (4 / 6, 4.5 / 6, 1.0, 10.0, 1.5 / 6 + 0.5),
  ]
  for row, (em, f1, fee, flops, loss) in zip(rows, expected):
    assert_close(row, {"agent": row["agent"], "em": em, "f1": f1, "fee": fee, "flops": flops,
                       "deferral_loss": loss})


def test_allocation_row_and_oracle():
  table = make_table()
  row = baselines.allocation_row(np.array([0, 1, 2, 2, 0, 0]), table)
  assert_close(row, {
      "em": 5 / 6, "f1": 5 / 6, "fee": 2.7 / 6, "flops": 27 / 6,
      "deferral_loss": (0.05 + 0.2 + 0.5 + 0.5 + 1.05 + 0.05) / 6,
      "shares": {"a": 0.5, "b": 1 / 6, "c": 2 / 6}})
  assert baselines.oracle(table) == row
  # Fee scale 2: a also wins q2 ([1.2 1.3 2.0]) and q3 ([0.7 1.8 2.0]); 10: a wins all.
  for beta_scale, shares in ((2.0, {"a": 5 / 6, "b": 1 / 6, "c": 0.0}),
                             (10.0, {"a": 1.0, "b": 0.0, "c": 0.0})):
    assert_close(baselines.oracle(make_table(beta_scale))["shares"], shares)


def test_a_rejector_reading_agents_pays_them_on_every_question():
  """Allocation a, b, c, c, a, a (fees 0.1, 0.4, 1.0); it reads b's features, so b runs on every
  question: the four questions routed to a or c pay b's 0.4 too, the one routed to b only once."""
  table = make_table()
  alloc_E = np.array([0, 1, 2, 2, 0, 0])
  row = baselines.rejector_row(alloc_E, table, fee=0.05, flops=0.5, paid=[1])
  plain = baselines.allocation_row(alloc_E, table)
  assert row["fee"] == pytest.approx((0.1 * 3 + 0.4 + 1.0 * 2 + 0.4 * 5) / 6 + 0.05)
  assert row["flops"] == pytest.approx((1.0 * 3 + 4.0 + 10.0 * 2 + 4.0 * 5) / 6 + 0.5)
  assert row["shares"] == plain["shares"] and row["f1"] == plain["f1"]
  assert row["deferral_loss"] == plain["deferral_loss"]  # the answering agent's cost, as defined
  fixed, route_fee_J = baselines.routing_fees(table.fee_J, 0.05, [1])
  assert fixed == pytest.approx(0.45)
  np.testing.assert_allclose(route_fee_J, [0.1, 0.0, 1.0])
  assert fixed + route_fee_J[alloc_E].mean() == pytest.approx(row["fee"])


def test_allocation_row_rejects_bad_allocations():
  table = make_table()
  with pytest.raises(ValueError, match=r"in \[0, 3\)"):
    baselines.allocation_row(np.array([0, 1, 3, 0, 0, 0]), table)
  with pytest.raises(ValueError, match=r"shape \(6,\)"):
    baselines.allocation_row(np.array([0, 1]), table)


def test_agent_table_rejects_percentages_and_non_finite_losses():
  with pytest.raises(ValueError, match=r"f1_ExJ must lie in \[0, 1\]"):
    baselines.AgentTable(["a", "b", "c"], F1_ExJ, F1_ExJ * 100, 1 - F1_ExJ, [0.1, 0.4, 1.0],
                         [1, 4, 10], 1.0)
  loss = 1 - F1_ExJ
  loss[3, 1] = np.inf
  with pytest.raises(ValueError, match="loss_ExJ is not finite at question 3, agent 'b'"):
    baselines.AgentTable(["a", "b", "c"], F1_ExJ, F1_ExJ, loss, [0.1, 0.4, 1.0], [1, 4, 10], 1.0)


def test_random_allocation_is_the_exact_expectation():
  table = make_table()
  row = baselines.random_allocation(np.array([0.5, 0.25, 0.25]), table)
  assert_close(row, {
      "em": 0.5 * 2 / 6 + 0.25 * 2 / 6 + 0.25 * 4 / 6,
      "f1": 0.5 * 2.5 / 6 + 0.25 * 3 / 6 + 0.25 * 4.5 / 6,
      "fee": 0.5 * 0.1 + 0.25 * 0.4 + 0.25 * 1.0,
      "flops": 0.5 + 1.0 + 2.5,
      "deferral_loss": 0.5 * (3.5 / 6 + 0.05) + 0.25 * 0.7 + 0.25 * 0.75,
      "shares": {"a": 0.5, "b": 0.25, "c": 0.25}})
  assert "sampled" not in row
  with pytest.raises(ValueError, match="summing to 1"):
    baselines.random_allocation(np.array([0.5, 0.25, 0.5]), table)


def test_gain_over_random_paired_differences():
  # The oracle's shares are (1/2, 1/6, 1/3); per question, its F1 minus F1 @ shares.
  table = make_table()
  shares = np.array([0.5, 1 / 6, 1 / 3])
  f1_diffs = [1 - 1.0, 1 - 0.5, 1 - (0.5 / 6 + 1 / 3), 1 - (0.25 + 1 / 3), 0.0,
              1 - (0.5 + 0.5 / 6 + 0.5 / 3)]
  costs = table.costs_ExJ()
  loss_diffs = [costs[e, j] - costs[e] @ shares for e, j in enumerate(ORACLE_E)]
  gain = baselines.gain_over_random(ORACLE_E, table)
  assert_close(gain, {
      "f1": 1.75 / 6, "f1_se": statistics.stdev(f1_diffs) / math.sqrt(6),
      "deferral_loss": statistics.fmean(loss_diffs),
      "deferral_loss_se": statistics.stdev(loss_diffs) / math.sqrt(6)})
  assert gain["deferral_loss"] < 0
  one = baselines.gain_over_random(np.zeros(6, int), table)  # one agent: random is the same
  assert one["f1"] == 0.0 and one["f1_se"] == 0.0


def test_random_allocation_sampled_draws():
  table = make_table()
  certain = baselines.random_allocation(np.array([0.0, 0.0, 1.0]), table, seeds=[0, 1])
  assert_close(certain["sampled"], {
      "seeds": [0, 1], "em_mean": 4 / 6, "em_std": 0.0, "f1_mean": 4.5 / 6, "f1_std": 0.0,
      "deferral_loss_mean": 0.75, "deferral_loss_std": 0.0})
  # Counts by largest remainder: 3, 1.5, 1.5 -> 3, 2 (ties to the first), 1.
  draw_E = baselines._draw(np.array([0.5, 0.25, 0.25]), 6, seed=3)
  assert np.bincount(draw_E, minlength=3).tolist() == [3, 2, 1]
  halves = baselines.random_allocation(np.array([0.5, 0.0, 0.5]), table, seeds=range(400))
  assert abs(halves["sampled"]["f1_mean"] - halves["f1"]) < 0.01
  assert halves["sampled"]["f1_std"] > 0


def test_cascade_at_given_thresholds():
  table = make_table()
  low, mid, _, _ = baselines.cascade(CONF_E, table, np.array([0.4, 0.5]))  # b first, then c
  # >= 0.5: a keeps q0, q3, q5; b answers q1, q2, q4, which a has already seen: they cost
  # both fees (0.1 + 0.4) and both FLOPs (1 + 4). The deferral loss is the answering agent's.
  assert_close(mid, {
      "main": "a", "expert": "b", "threshold": 0.5, "em": 3 / 6, "f1": 4 / 6,
      "fee": (3 * 0.1 + 3 * (0.1 + 0.4)) / 6, "flops": (3 * 1 + 3 * (1 + 4)) / 6,
      "deferral_loss": (0.05 + 0.2 + 0.7 + 0.55 + 1.2 + 0.05) / 6,
      "shares": {"a": 0.5, "b": 0.5, "c": 0.0}})
  # >= 0.4 is inclusive: a also keeps q2 (confidence 0.4).
  assert_close(low["f1"], 3.5 / 6)
  assert_close(low["shares"], {"a": 4 / 6, "b": 2 / 6, "c": 0.0})
  (to_c,) = baselines.cascade(CONF_E, table, np.array([0.5]), experts=[2])
  assert to_c["expert"] == "c"
  assert_close(to_c["f1"], 4.5 / 6)
  assert_close(to_c["fee"], (3 * 0.1 + 3 * (0.1 + 1.0)) / 6)
  assert_close(baselines.cascade(CONF_E, table, np.array([0.5]))[1], to_c)
  with pytest.raises(ValueError, match="experts"):
    baselines.cascade(CONF_E, table, np.array([0.5]), experts=[0])


def test_cascade_from_another_main_model_pays_it():
  """CONF_E read as b's confidence: b keeps q0, q3, q5 and passes q1, q2, q4 on to c."""
  table = make_table()
  to_a, to_c = baselines.cascade(CONF_E, table, np.array([0.5]), main=1)
  assert (to_a["main"], to_a["expert"], to_c["main"], to_c["expert"]) == ("b", "a", "b", "c")
  assert_close(to_c, {
      "main": "b", "expert": "c", "threshold": 0.5, "em": 3 / 6, "f1": 3.5 / 6,
      "fee": (3 * 0.4 + 3 * (0.4 + 1.0)) / 6, "flops": (3 * 4 + 3 * (4 + 10)) / 6,
      "deferral_loss": (0.2 + 1.2 + 0.7 + 0.5 + 0.5 + 1.5) / 6,
      "shares": {"a": 0.0, "b": 0.5, "c": 0.5}})
  with pytest.raises(ValueError, match="experts"):
    baselines.cascade(CONF_E, table, np.array([0.5]), experts=[1], main=1)
  with pytest.raises(ValueError, match="main model"):
    baselines.cascade(CONF_E, table, main=3)


def test_cascade_default_thresholds_span_main_only_to_expert_only():
  thresholds = baselines.quantile_thresholds(CONF_E, num=3)
  np.testing.assert_allclose(thresholds[:3], [0.1, 0.5, 0.9])
  assert 0.9 < thresholds[3] < 0.9 + 1e-12
  rows = baselines.cascade(CONF_E, make_table())
  assert len(rows) == 2 * 22 and [r["expert"] for r in rows[21:23]] == ["b", "c"]
  assert rows[0]["shares"] == {"a": 1.0, "b": 0.0, "c": 0.0}
  assert rows[21]["shares"] == {"a": 0.0, "b": 1.0, "c": 0.0}
  assert rows[-1]["shares"] == {"a": 0.0, "b": 0.0, "c": 1.0}
  assert_close([rows[0]["fee"], rows[21]["fee"], rows[-1]["fee"]], [0.1, 0.5, 1.1])


# Points (fee, F1); the front is 0, 2, 5: (0.1, 0.4), (0.2, 0.6), (0.4, 0.7).
COST_P = np.array([0.1, 0.2, 0.2, 0.3, 0.5, 0.4])
F1_P = np.array([0.4, 0.5, 0.6, 0.55, 0.7, 0.7])
COST_F, F1_F = np.array([0.1, 0.2, 0.4]), np.array([0.4, 0.6, 0.7])


def test_pareto_front():
  assert curve.pareto_front(COST_P, F1_P).tolist() == [0, 2, 5]
  # Equal in both: the first listed stays.
  assert curve.pareto_front([0.3, 0.3], [0.5, 0.5]).tolist() == [0]
  # Point 1 is not dominated but lies under the segment from 0 to 2 (F1 0.5 at its cost):
  # the 1:2 mixture of 0 and 2 beats it. Point 3 lies on the segment from 2 to 4.
  assert curve.pareto_front([0.1, 0.2, 0.4, 0.5, 0.6], [0.4, 0.45, 0.7, 0.75, 0.8]).tolist() == [
      0, 2, 4]
  # Concave chains stay whole, whatever the order the points come in.
  assert curve.pareto_front([0.4, 0.1, 0.2], [0.7, 0.4, 0.6]).tolist() == [1, 2, 0]


def test_best_f1_at_interpolates_and_is_undefined_below_the_front():
  assert math.isnan(curve.best_f1_at(COST_F, F1_F, 0.05))
  assert_close(curve.best_f1_at(COST_F, F1_F, 0.15), 0.5)
  assert_close(curve.best_f1_at(COST_F, F1_F, 0.3), 0.65)
  assert_close(curve.best_f1_at(COST_F, F1_F, 0.9), 0.7)


def test_area_under_curve_hand_trapezoids():
  # Cost 0..0.1 flat at 0.4, trapezoids to 0.2 and 0.4, flat at 0.7 to 1.
  assert_close(curve.area_under_curve(COST_F, F1_F, 1.0),
               0.1 * 0.4 + 0.1 * 0.5 + 0.2 * 0.65 + 0.6 * 0.7)
  # Normalised by 0.5: knots 0.2, 0.4, 0.8.
  assert_close(curve.area_under_curve(COST_F, F1_F, 0.5),
               0.2 * 0.4 + 0.2 * 0.5 + 0.4 * 0.65 + 0.2 * 0.7)
  assert_close(curve.area_under_curve([0.3], [0.55], 1.0), 0.55)
  with pytest.raises(ValueError, match="positive"):
    curve.area_under_curve(COST_F, F1_F, 0.0)


def test_gap_recovered():
  gaps = curve.gap_recovered(COST_F, F1_F, f1_main=0.4, f1_best=0.8, best_cost=0.8)
  assert_close(gaps, {"25%": {"cost": 0.2, "f1": 0.6, "recovered": 0.5},
                      "50%": {"cost": 0.4, "f1": 0.7, "recovered": 0.75},
                      "75%": {"cost": 0.6, "f1": 0.7, "recovered": 0.75}})
  below = curve.gap_recovered(COST_F, F1_F, f1_main=0.4, f1_best=0.8, best_cost=0.2)
  assert below["25%"] == {"cost": 0.05, "f1": None, "recovered": None}
  assert_close(below["75%"]["recovered"], (0.5 - 0.4) / 0.4)  # F1 0.5 at cost 0.15
  no_gap = curve.gap_recovered(COST_F, F1_F, f1_main=0.4, f1_best=0.4, best_cost=0.8)
  assert_close(no_gap["50%"], {"cost": 0.4, "f1": 0.7, "recovered": None})


def test_row_at_cost_mixes_the_front_rows_around_it():
  table = make_table()
  main, both = baselines.allocation_row(np.zeros(6, int), table), baselines.oracle(table)
  mixed = curve.row_at_cost([main, both], 0.1 + 0.25 * (2.7 / 6 - 0.1))
  assert_close(mixed, {
      k: 0.75 * main[k] + 0.25 * both[k] for k in baselines.METRICS} | {
          "shares": {"a": 0.875, "b": 0.25 / 6, "c": 0.5 / 6}})
  assert_close(curve.row_at_cost([main, both], 5.0),
               {k: both[k] for k in (*baselines.METRICS, "shares")})
  assert curve.row_at_cost([main, both], 0.05) is None


def make_report() -> dict:
  table = make_table()
  sweep = [(0.0, np.array([0, 1, 2, 2, 2, 0])), (0.5, ORACLE_E), (10.0, np.zeros(6, int))]
  return report.build_report(table, CONF_E, ORACLE_E, sweep, random_seeds=[0, 1],
                             metadata={"split": "test"})


def test_report_joins_cascades_from_other_main_models():
  table, conf_b_E = make_table(), np.array([0.9, 0.8, 0.5, 0.1, 0.2, 0.6])
  rep = report.build_report(table, CONF_E, ORACLE_E, [(0.5, ORACLE_E)],
                            cascade_from={1: conf_b_E}, cascade_points=3)
  assert rep["baselines"]["cascade"]["mains"] == ["a", "b"]
  points = rep["curve"]["cascade"]["points"]
  # Each main model is thresholded at the same 3 quantiles of its own confidence.
  from_a = baselines.cascade(CONF_E, table, baselines.quantile_thresholds(CONF_E, 3))
  from_b = baselines.cascade(conf_b_E, table, baselines.quantile_thresholds(conf_b_E, 3), main=1)
  assert points == from_a + from_b and len(from_a) == len(from_b) == 2 * 4
  # b keeps q0, q1, q5 (confidence >= 0.55) and passes q2, q3, q4 on to c.
  assert_close(from_b[5]["threshold"], 0.55)
  assert_close([from_b[5]["f1"], from_b[5]["fee"]], [4.5 / 6, 0.4 + 0.5 * 1.0])
  assert "| b | c | 0.55 |" in report.markdown(rep)
  with pytest.raises(ValueError, match="other main models than agent 0"):
    report.build_report(table, CONF_E, ORACLE_E, [(0.5, ORACLE_E)], cascade_from={0: conf_b_E})


def test_report_contents():
  rep = make_report()
  assert list(rep) == ["metadata", "agents", "rejector", "baselines", "budgets", "curve"]
  assert rep["budgets"] == []
  assert rep["metadata"]["split"] == "test"
  assert rep["metadata"]["best_agent"] == "c"
  assert rep["rejector"] == {"beta_scale": 0.5, **baselines.oracle(make_table()),
                             "gain_over_random": baselines.gain_over_random(ORACLE_E, make_table())}
  random = rep["baselines"]["random"]
  assert_close(random["fee"], rep["rejector"]["fee"])
  assert_close(random["shares"], rep["rejector"]["shares"])
  assert random["sampled"]["seeds"] == [0, 1]
  # One cascade to b and one to c; a deferred question pays a's fee 0.1 too. The joint
  # front: a alone (fee 0.1, F1 2.5/6); to b with 3 deferred (q4, q1, q2: fee 0.1 + 3 * 0.4
  # / 6 = 0.3, F1 4/6); to c with 4 deferred (fee 0.1 + 4/6, F1 5/6). To c with 3 deferred
  # (fee 0.6, F1 4.5/6) lies under the segment between the last two. At the rejector's fee
  # 0.45 those two mix with weight (0.45 - 0.3) / (4/6 - 0.2) = 9/28 on the second.
  cascade = rep["curve"]["cascade"]
  assert rep["baselines"]["cascade"]["experts"] == ["b", "c"]
  assert len(cascade["points"]) == 2 * 22
  front = curve.front_rows(cascade)
  assert {row["expert"] for row in front} == {"b", "c"}
  assert_close(rep["baselines"]["cascade"]["at_rejector_cost"],
               curve.row_at_cost(front, rep["rejector"]["fee"]))
  assert [(row["expert"], row["shares"]["a"]) for row in front] == [
      ("b", 1.0), ("b", 0.5), ("c", 2 / 6)]
  assert_close(rep["baselines"]["cascade"]["at_rejector_cost"]["f1"], (4 + 9 / 28) / 6)
  rejector = rep["curve"]["rejector"]
  assert [p["beta_scale"] for p in rejector["points"]] == [0.0, 0.5, 10.0]
  # Sweep points (fee, F1): (3.6/6, 5/6), (2.7/6, 5/6), (0.1, 2.5/6): the first is dominated.
  assert [p["index"] for p in rejector["pareto_front"]] == [2, 1]
  assert_close(rejector["auc"],
               0.1 * 2.5 / 6 + (0.45 - 0.1) * (2.5 / 6 + 5 / 6) / 2 + 0.55 * 5 / 6)
  # Gap from a (2.5/6) to c (4.5/6) at 0.25 of c's fee 1.0: F1 on the front at fee 0.25.
  f1_025 = 2.5 / 6 + (0.25 - 0.1) / (0.45 - 0.1) * (5 / 6 - 2.5 / 6)
  assert_close(rejector["gap_recovered"]["25%"]["recovered"], (f1_025 - 2.5 / 6) / (2 / 6))
  assert_close(rejector["gap_recovered"]["50%"]["recovered"], 2.5 / 2)
  assert_close([p["shares"] for p in rep["curve"]["random"]["points"]],
               [p["shares"] for p in rejector["points"]])


def test_report_routing_metrics_on_one_axis():
  rep = make_report()
  assert rep["metadata"]["routing_metrics"] | {"definition": None} == {
      "weak_agent": "a", "strong_agent": "c", "aiq_cost_range": [0.1, 1.0],
      "apgr_cost_range": [0.1, 1.0], "definition": None}
  curves = rep["curve"]
  # Agents alone (fee, F1): a (0.1, 2.5/6), b (0.4, 3/6), c (1, 4.5/6); b lies under a-c.
  assert [p["agent"] for p in curves["agents"]["pareto_front"]] == ["a", "c"]
  assert_close({k: curves["agents"][k] for k in ("aiq", "apgr")}, {"aiq": 3.5 / 6, "apgr": 0.5})
  assert_close(curves["agents"]["cpt"]["80%"], {"fee": 0.82, "fraction": 0.8})
  # Rejector front (0.1, 2.5/6), (0.45, 5/6), flat to fee 1; the gap is 2/6.
  rejector_aiq = (0.35 * (7.5 / 6) / 2 + 0.55 * 5 / 6) / 0.9
  assert_close(curves["rejector"]["aiq"], rejector_aiq)
  assert_close(curves["rejector"]["apgr"], (rejector_aiq - 2.5 / 6) / (2 / 6))
  assert_close(curves["rejector"]["cpt"]["50%"]["fee"], 0.1 + 0.35 * 0.4)
  # Cascade front (0.1, 2.5/6), (0.3, 4/6), (0.1 + 4/6, 5/6), flat to fee 1.
  cascade_area = 0.2 * (6.5 / 6) / 2 + (4 / 6 - 0.2) * (9 / 6) / 2 + (0.9 - 4 / 6) * 5 / 6
  assert_close(curves["cascade"]["aiq"], cascade_area / 0.9)
  assert "| agents' own front | 0.5833 | 0.5000 | 0.5500 (0.50) | 0.8200 (0.80) |" in (
      report.markdown(rep).splitlines())


def test_report_budgets_met_on_held_out_logits_realised_on_test():
  # Agent c leads a by v on each question (b never competes): with offsets -lambda * fee, c is
  # chosen where v - lambda > -0.1 lambda, i.e. v > 0.9 lambda. Held out v = 1, 2, 3, 4: fee
  # 0.05 (the rejector's) + 0.1 or 1, and "fee=0.6" allows two of four to c: lambda = 2 / 0.9.
  lead = lambda v_E: np.stack([np.zeros(len(v_E)), np.full(len(v_E), -9.0), v_E], axis=1)
  calibration = budget_lib.Calibration(("a", "b", "c"), lead(np.array([1.0, 2, 3, 4])),
                                       [0.1, 0.4, 1.0], fixed_fee=0.05)
  test_v = np.array([0.5, 1.0, 1.5, 2.5, 3.0, 5.0])
  rep = report.build_report(
      make_table(), CONF_E, ORACLE_E, [(0.5, ORACLE_E)], rejector_fee=0.05,
      budgets=["fee=0.6", "share:c<=0.25", "fee=9"], calibration=calibration,
      rejector_logits_ExJ=lead(test_v), test_groups_E=["x", "x", "y", "y", "z", "z"],
      metadata={"budget_calibration": "4 held-out questions"})
  fee, share, unreachable = rep["budgets"]
  assert fee["lambda"] == pytest.approx(2 / 0.9)
  assert_close(fee["offsets"], {"a": -0.2 / 0.9, "b": -0.8 / 0.9, "c": -2 / 0.9})
  assert_close(fee["held_out"], {"num_questions": 4, "fee": 0.6,
                                 "shares": {"a": 0.5, "b": 0.0, "c": 0.5},
                                 "standard_error": np.std([0.15, 0.15, 1.05, 1.05], ddof=1) / 2})
  # On test c gets v = 2.5, 3 and 5 (q3..q5): F1 1, 0, 0, 1, 0, 0.5; fee 0.05 + 0.55.
  test_alloc = np.array([0, 0, 0, 2, 2, 2])
  assert_close(fee["test"], baselines.rejector_row(test_alloc, make_table(), 0.05))
  assert_close([fee["test"]["f1"], fee["test"]["fee"], fee["test_minus_target"]],
               [2.5 / 6, 0.6, 0.0])
  # Fees 0.15 (q0..q2) and 1.05 (q3..q5) by article x, y, z: residuals sum to -0.9, 0, 0.9.
  assert_close(fee["test_standard_error"], np.sqrt(3 / 2 * 2 * 0.9**2) / 6)
  assert fee["gain_over_random"] == baselines.gain_over_random(test_alloc, make_table())
  # The cap keeps one of four held out with c (delta 3): on test only v = 5.
  assert share["delta"] == pytest.approx(3.0) and share["agent"] == "c"
  assert_close(share["test"]["shares"], {"a": 5 / 6, "b": 0.0, "c": 1 / 6})
  assert_close(share["test_minus_target"], 1 / 6 - 0.25)
  # Only q5 goes to c: residuals from 1/6 sum to -1/3, -1/3 and 2/3 by article.
  assert_close(share["test_standard_error"], np.sqrt(3 / 2 * (2 / 9 + 4 / 9)) / 6)
  assert unreachable == {"budget": "fee=9", "error": unreachable["error"]}
  assert "lies in [0.15, 1.05]" in unreachable["error"]
  lines = report.markdown(rep).splitlines()
  assert any("Each budget is met on 4 held-out questions" in line for line in lines)
  # Deferral loss: a's 1 - F1 on q0..q2 plus 0.5 * 0.1, c's on q3..q5 plus 0.5 * 1.
  assert ("| `fee=0.6` | lambda 2.222 | 0.6000 ± 0.2598 | +0.0000 ± 0.2598 | 0.3333 | 0.4167 | "
          "0.6000 | 5.5 | 0.8583 | 0.5000 | 0.0000 | 0.5000 |") in lines
  assert any(line.startswith("| `share:c<=0.25` | delta 3 on c | 0.2500 ± 0.2500 | -0.0833 ± "
                             "0.1667 |") for line in lines)
  assert any(line.startswith("- `fee=9`: budget 'fee=9' is out of reach") for line in lines)
  # The calibration must price questions as the report does.
  with pytest.raises(ValueError, match="prices questions otherwise than the report"):
    report.build_report(make_table(), CONF_E, ORACLE_E, [(0.5, ORACLE_E)], budgets=["fee=0.6"],
                        calibration=calibration, rejector_logits_ExJ=lead(test_v))


def test_a_budget_met_on_the_test_questions_themselves_realises_its_target():
  # As above: c where v > 0.9 lambda. Held out v = 1..4, "fee=0.9" allows three of four to c
  # (lambda 1 / 0.9), which on test sends four of six (v > 1): fee 0.05 + 4.2 / 6 = 0.75.
  # Met on the test logits themselves, the most spending lambda within 0.9 sends five
  # (lambda 0.5 / 0.9): fee 0.05 + 5.1 / 6 = 0.9 exactly.
  lead = lambda v_E: np.stack([np.zeros(len(v_E)), np.full(len(v_E), -9.0), v_E], axis=1)
  calibration = budget_lib.Calibration(("a", "b", "c"), lead(np.array([1.0, 2, 3, 4])),
                                       [0.1, 0.4, 1.0], fixed_fee=0.05)
  rep = report.build_report(
      make_table(), CONF_E, ORACLE_E, [(0.5, ORACLE_E)], rejector_fee=0.05,
      budgets=["fee=0.9"], calibration=calibration,
      rejector_logits_ExJ=lead(np.array([0.5, 1.0, 1.5, 2.5, 3.0, 5.0])))
  (row,) = rep["budgets"]
  assert (row["lambda"], row["test"]["fee"]) == (pytest.approx(1 / 0.9), pytest.approx(0.75))
  batch = row["batch"]
  assert batch["lambda"] == pytest.approx(0.5 / 0.9)
  alloc_E = np.array([0, 2, 2, 2, 2, 2])
  assert_close(batch["test"], baselines.rejector_row(alloc_E, make_table(), 0.05))
  assert batch["gain_over_random"] == baselines.gain_over_random(alloc_E, make_table())
  assert_close([batch["test"]["fee"], batch["test_minus_target"]], [0.9, 0.0])
  lines = report.markdown(rep).splitlines()
  # Without the test questions' articles, test's own standard error is per question: fees
  # 0.15 (twice) and 1.05 (four times), or 0.15 once and 1.05 five times on test's own logits.
  assert row["test_standard_error"] == pytest.approx(np.std([0.15] * 2 + [1.05] * 4, ddof=1)
                                                     / 6**0.5)
  assert any(line.startswith("| `fee=0.9` | lambda 1.111 | 0.8250 ± ")
             and "| -0.1500 ± 0.1897 |" in line for line in lines)
  assert any(line.startswith("| `fee=0.9` on test | lambda 0.5556 | – | +0.0000 ± 0.1500 |")
             for line in lines)


def test_fee_offsets_trace_the_rejectors_curve_on_its_own_test_logits():
  # Agent c leads a by v (b never competes): with offsets -lambda * fee, c is chosen where
  # v > 0.9 lambda (ties to a). Fees 0.1 (all to a) to 1.0 (all to c); at the middle target
  # 0.55 the most spending offsets send 3 of 6 to c: those with v = 2.5, 3, 5.
  v_E = np.array([0.5, 1.0, 1.5, 2.5, 3.0, 5.0])
  logits_ExJ = np.stack([np.zeros(6), np.full(6, -9.0), v_E], axis=1)
  rep = report.build_report(make_table(), CONF_E, ORACLE_E, [(0.0, ORACLE_E)],
                            rejector_logits_ExJ=logits_ExJ, fee_offsets=3)
  points = rep["curve"]["rejector"]["points"]
  assert [(p["beta_scale"], p["lambda"] is None) for p in points] == [
      (0.0, True), (0.5, False), (0.5, False), (0.5, False)]
  assert [p["lambda"] for p in points[1:3]] == [pytest.approx(5 / 0.9), pytest.approx(1.5 / 0.9)]
  for point, alloc_E in zip(points[1:], ([0] * 6, [0, 0, 0, 2, 2, 2], [2] * 6)):
    expected = baselines.rejector_row(np.array(alloc_E), make_table())
    assert_close({k: point[k] for k in expected}, expected)
    assert point["gain_over_random"] == baselines.gain_over_random(np.array(alloc_E), make_table())
  assert [p["lambda"] for p in rep["curve"]["random"]["points"]] == [p["lambda"] for p in points]
  lines = report.markdown(rep).splitlines()
  assert "| beta scale | lambda | front | F1 gain | EM | F1 | fee | FLOPs/question | " \
         "deferral loss | share a | share b | share c |" in lines
  assert any(line.startswith("| 0.5 | 1.667 | ") for line in lines)
  with pytest.raises(ValueError, match="fee offsets need the rejector's test logits"):
    report.build_report(make_table(), CONF_E, ORACLE_E, [(0.0, ORACLE_E)], fee_offsets=3)
  with pytest.raises(ValueError, match=r"shape \(6, 2\), not \(questions, agents\) = \(6, 3\)"):
    report.build_report(make_table(), CONF_E, ORACLE_E, [(0.0, ORACLE_E)],
                        rejector_logits_ExJ=logits_ExJ[:, :2], fee_offsets=3)


def test_curve_settings_are_checked_before_anything_runs():
  config = config_lib.ExperimentConfig(name="x")
  report_stage.check_eval(config_lib.override(config, "eval.fee_offsets=0"))
  for setting, message in (("eval.fee_offsets=1",
                            "eval.fee_offsets must be 0 .none. or at least 2, got 1"),
                           ("eval.cascade_points=1", "eval.cascade_points must be at least 2")):
    with pytest.raises(config_lib.ConfigError, match=message):
      report_stage.check_eval(config_lib.override(config, setting))


def test_budgets_are_checked_before_anything_runs():
  config = config_lib.ExperimentConfig(
      name="x", agents=(config_lib.AgentConfig(name="small"), config_lib.AgentConfig(name="human")))
  report_stage.check_eval(config_lib.override(
      config, "eval.budgets=('fee=1.2', 'share:human<=0.3')"))
  for specs, message in (("('fee:1.2',)", r"eval.budgets: budget 'fee:1.2': expected"),
                         ("('share:expert<=0.3',)", r"caps 'expert', which is no agent of x "
                                                    r"\(small, human\)")):
    with pytest.raises(budget_lib.BudgetError, match=message):
      report_stage.check_eval(config_lib.override(config, f"eval.budgets={specs}"))


def test_report_markdown_tables():
  text = report.markdown(make_report())
  lines = text.splitlines()
  assert "| agent | EM | F1 | fee | FLOPs/question | deferral loss |" in lines
  assert "| a | 0.3333 | 0.4167 | 0.1000 | 1 | 0.6333 |" in lines
  assert "| c | 0.6667 | 0.7500 | 1.0000 | 10 | 0.7500 |" in lines
  assert ("| allocation | EM | F1 | fee | FLOPs/question | deferral loss | share a | share b | "
          "share c |") in lines
  oracle_cells = "| 0.8333 | 0.8333 | 0.4500 | 4.5 | 0.3917 | 0.5000 | 0.1667 | 0.3333 |"
  assert "| rejector " + oracle_cells in lines
  assert "| oracle " + oracle_cells in lines
  assert any(line.startswith("| random (same shares) | ") for line in lines)
  assert any(line.startswith("| rejector | 3 | 2 | ") for line in lines)  # the curves' summary
  # All to agent a: exactly random at its own shares.
  assert ("| 10 | – | * | +0.0000 ± 0.0000 | 0.3333 | 0.4167 | 0.1000 | 1 | 0.6333 | 1.0000 | "
          "0.0000 | 0.0000 |") in lines
  assert "± its standard error: F1 +0.2917 ± 0.1026, deferral loss -0.2917 ± 0.0638." in text


def test_write_report_and_plot(tmp_path):
  rep = make_report()
  json_path, md_path = report.write_report(rep, tmp_path / "out")
  assert json.loads(json_path.read_text()) == rep
  assert md_path.read_text() == report.markdown(rep)
  png = plot.write_tradeoff(rep, tmp_path / "out" / "tradeoff.png")
  data = png.read_bytes()
  assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
      "report.json", "report.md", "tradeoff.png"]
  # The cascade deferring everything to c pays a too: fee 1.1, still on the plot.
  assert plot.tradeoff_figure(rep).axes[0].get_xlim() == pytest.approx((-0.03, 1.13))


def test_the_plotted_fronts_are_the_ones_aiq_reads():
  # A rejector sending everything to c while paying 0.5 to decide: its one point (1.5, 0.75).
  # Its front is drawn as the AIQ reads it, from a alone (0.1) to c alone (1.0).
  all_c = np.full(6, 2)
  rep = report.build_report(make_table(), CONF_E, all_c, [(0.5, all_c)], rejector_fee=0.5)
  (front,) = [line for line in plot.tradeoff_figure(rep).axes[0].get_lines()
              if line.get_label().startswith("rejector front")]
  np.testing.assert_allclose(front.get_xydata(), [[0.1, 2.5 / 6], [1.0, 0.75]])
  assert front.get_label().endswith(f"AIQ {rep['curve']['rejector']['aiq']:.3f}")


def test_the_rejectors_own_fee_is_paid_on_every_question():
  free, paid = make_report(), report.build_report(
      make_table(), CONF_E, ORACLE_E,
      [(0.0, np.array([0, 1, 2, 2, 2, 0])), (0.5, ORACLE_E), (10.0, np.zeros(6, int))],
      random_seeds=[0, 1], rejector_fee=0.05, rejector_flops=2.0, metadata={"split": "test"})
  for before, after in [(free["rejector"], paid["rejector"]),
                        *zip(free["curve"]["rejector"]["points"],
                             paid["curve"]["rejector"]["points"])]:
    assert_close({k: after[k] for k in ("fee", "flops", "deferral_loss", "f1", "shares")},
                 {"fee": before["fee"] + 0.05, "flops": before["flops"] + 2.0,
                  "deferral_loss": before["deferral_loss"], "f1": before["f1"],
                  "shares": before["shares"]})
  # Random allocation needs no rejector; the paired gain compares the same shares.
  assert paid["baselines"]["random"] == free["baselines"]["random"]
  assert paid["rejector"]["gain_over_random"] == free["rejector"]["gain_over_random"]
  assert (paid["metadata"]["rejector_fee"], paid["metadata"]["rejector_flops"]) == (0.05, 2.0)
  # The cascade is read at the rejector's whole fee, 0.5 here: on its front between fee 0.3
  # (F1 4/6) and 0.1 + 4/6 (F1 5/6).
  assert_close(paid["baselines"]["cascade"]["at_rejector_cost"]["f1"],
               4 / 6 + (0.5 - 0.3) / (4 / 6 - 0.2) / 6)
  assert "its own fee 0.05 per question" in report.markdown(paid)


def test_routing_cost_prices_the_rejectors_forward_pass_like_the_largest_model():
  encoder = EncoderConfig(family="bert", vocab_size=50, hidden_size=16, num_layers=2, num_heads=2,
                          intermediate_size=32, max_position_embeddings=512)
  model = nnx.eval_shape(lambda: text.text_rejector(  # a rejector reading the text at 24 tokens
      "scratch", 3, vocab_size=50, num_layers=2, hidden_size=16, num_heads=2,
      intermediate_size=32, max_seq_len=24))
  assert model.sources[0].config == encoder
  # Agent b has the most FLOPs per question (40) and is priced 0.5 (say, by latency).
  pool = types.SimpleNamespace(names=["a", "b", "c"], flops_J=np.array([10.0, 40.0, 0.0]),
                               fees_J=np.array([0.2, 0.5, 3.0]))
  flops = flops_lib.forward_flops(encoder, 24, task="classify", num_labels=3)
  config = config_lib.ExperimentConfig(rejector=config_lib.RejectorConfig(max_seq_len=24))
  assert report_stage.routing_cost(config, pool, model) == pytest.approx((flops / 40 * 0.5, flops))
  for spec, fee in (("0", 0.0), ("0.25", 0.25)):
    priced = config_lib.override(config, f"eval.rejector_fee={spec}")
    assert report_stage.routing_cost(priced, pool, model) == pytest.approx((fee, flops))
  for spec in ("-1", "flop", "latency"):
    with pytest.raises(ValueError):
      report_stage.check_rejector_fee(spec)
  no_models = types.SimpleNamespace(names=["x"], flops_J=np.array([0.0]), fees_J=np.array([1.0]))
  with pytest.raises(ValueError, match="rejector_fee=0"):
    report_stage.routing_cost(config, no_models, model)
