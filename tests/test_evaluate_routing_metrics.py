"""RouterBench's AIQ and RouteLLM's APGR / CPT on small curves, each value computed by hand."""

import pytest

from l2d_jax.evaluate import routing_metrics

# Four agents (fee, F1): w (0.2, 0.3), m (0.5, 0.5), x (1.0, 0.6), s (2.0, 0.9). x lies under the
# segment from m to s (0.5 + 0.5 / 1.5 * 0.4 = 0.633 at fee 1), so the agents' front is w, m, s.
NAMES = ["w", "m", "x", "s"]
FEES = [0.2, 0.5, 1.0, 2.0]
F1S = [0.3, 0.5, 0.6, 0.9]


def axis() -> routing_metrics.CostAxis:
  return routing_metrics.CostAxis.from_agents(NAMES, FEES, F1S)


def test_cost_axis_weak_is_the_cheapest_strong_the_best():
  assert axis() == routing_metrics.CostAxis(weak="w", strong="s", c_min=0.2, c_max=2.0,
                                            c_weak=0.2, q_weak=0.3, c_strong=2.0, q_strong=0.9)
  # Of two equally cheap agents the better one is weak; the best need not be the dearest.
  tied = routing_metrics.CostAxis.from_agents(["a", "b", "c", "d"], [0.5, 0.5, 1.0, 3.0],
                                              [0.2, 0.4, 0.9, 0.7])
  assert (tied.weak, tied.strong, tied.c_max, tied.c_strong) == ("b", "c", 3.0, 1.0)
  rows = [{"agent": n, "fee": c, "f1": q} for n, c, q in zip(NAMES, FEES, F1S)]
  assert routing_metrics.CostAxis.from_rows(rows) == axis()  # a report's agent rows
  with pytest.raises(ValueError, match="one fee and one F1 per agent"):
    routing_metrics.CostAxis.from_agents(["a"], [0.1, 0.2], [0.3, 0.4])


def test_the_agents_own_front():
  got = routing_metrics.summarize(FEES, F1S, axis())
  # Front w-m-s: mean F1 over [0.2, 2] = (0.3 * (0.3 + 0.5) / 2 + 1.5 * (0.5 + 0.9) / 2) / 1.8.
  assert got["aiq"] == pytest.approx((0.12 + 1.05) / 1.8)
  assert got["aiq"] == pytest.approx(0.65)
  # Weak to strong spans the same fees: APGR = (0.65 - 0.3) / 0.6.
  assert got["apgr"] == pytest.approx(0.35 / 0.6)
  # 50% of the gap is F1 0.6, on the segment m-s at 0.5 + 0.1 / 0.4 * 1.5; 80% is F1 0.78.
  assert got["cpt"]["50%"] == pytest.approx({"fee": 0.875, "fraction": 0.675 / 1.8})
  assert got["cpt"]["80%"] == pytest.approx({"fee": 1.55, "fraction": 1.35 / 1.8})


def test_a_router_curve_anchored_at_the_weak_agent_and_cut_at_the_dearest():
  # Points (0.3, 0.6), (0.8, 0.85), (1.2, 0.8) dominated, (2.5, 0.95) beyond the range. The
  # front starts at the weak agent (0.2, 0.3), and reads 0.85 + 1.2 / 1.7 * 0.1 at fee 2.
  f1_at_2 = 0.85 + 1.2 / 1.7 * 0.1
  area = 0.1 * (0.3 + 0.6) / 2 + 0.5 * (0.6 + 0.85) / 2 + 1.2 * (0.85 + f1_at_2) / 2
  got = routing_metrics.summarize([0.3, 0.8, 1.2, 2.5], [0.6, 0.85, 0.8, 0.95], axis())
  assert got["aiq"] == pytest.approx(area / 1.8)
  assert got["apgr"] == pytest.approx((area / 1.8 - 0.3) / 0.6)
  assert got["cpt"]["50%"] == pytest.approx({"fee": 0.3, "fraction": 0.1 / 1.8})
  assert got["cpt"]["80%"] == pytest.approx({"fee": 0.3 + 0.18 / 0.25 * 0.5,
                                             "fraction": 0.46 / 1.8})


def test_a_curve_that_stops_short_still_mixes_up_to_the_strong_agent():
  # One point (0.4, 0.5): the front runs w, it, then the segment to s (2.0, 0.9).
  area = 0.2 * (0.3 + 0.5) / 2 + 1.6 * (0.5 + 0.9) / 2
  got = routing_metrics.summarize([0.4], [0.5], axis())
  assert got["aiq"] == pytest.approx(area / 1.8)
  assert got["apgr"] == pytest.approx((area / 1.8 - 0.3) / 0.6)
  # F1 0.6 and 0.78 lie on the segment from (0.4, 0.5) to s, of slope 0.25.
  assert got["cpt"]["50%"] == pytest.approx({"fee": 0.8, "fraction": 0.6 / 1.8})
  assert got["cpt"]["80%"] == pytest.approx({"fee": 1.52, "fraction": 1.32 / 1.8})


def test_a_router_that_pays_for_reading_reaches_the_strong_agent_at_its_fee():
  # Its dearest point (2.3, 0.88) sends 90% to s but pays a reader: dearer than s and worse.
  # Without s the front would read 0.85 + 0.5 / 0.8 * 0.03 at fee 2; with it, 0.9.
  area = 0.3 * (0.3 + 0.6) / 2 + 1.0 * (0.6 + 0.85) / 2 + 0.5 * (0.85 + 0.9) / 2
  got = routing_metrics.summarize([0.5, 1.5, 2.3], [0.6, 0.85, 0.88], axis())
  assert got["aiq"] == pytest.approx(area / 1.8)
  cost_F, f1_F = axis().front([0.5, 1.5, 2.3], [0.6, 0.85, 0.88])
  assert cost_F.tolist() == [0.2, 0.5, 1.5, 2.0] and f1_F.tolist() == [0.3, 0.6, 0.85, 0.9]
  # A weak or strong agent under the points' own front changes nothing.
  assert routing_metrics.summarize([0.2, 2.0], [0.5, 0.95], axis())["aiq"] == pytest.approx(
      (0.5 + 0.95) / 2)


def test_apgr_runs_to_the_strong_agents_fee_when_it_is_not_the_dearest():
  strong_first = routing_metrics.CostAxis.from_agents(["a", "b", "c"], [0.1, 1.0, 3.0],
                                                      [0.2, 0.8, 0.7])
  got = routing_metrics.summarize([0.1, 1.0, 3.0], [0.2, 0.8, 0.7], strong_first)
  assert got["aiq"] == pytest.approx((0.9 * 0.5 + 2.0 * 0.8) / 2.9)
  assert got["apgr"] == pytest.approx(0.5)  # the straight line from a to b
  assert got["cpt"]["80%"] == pytest.approx({"fee": 0.82, "fraction": 0.8})


def test_no_gap_and_no_range_are_undefined_not_zero():
  best_is_cheapest = routing_metrics.CostAxis.from_agents(["a", "b"], [0.1, 1.0], [0.9, 0.5])
  got = routing_metrics.summarize([0.1, 1.0], [0.9, 0.5], best_is_cheapest)
  assert got == {"aiq": pytest.approx(0.9), "apgr": None, "cpt": {"50%": None, "80%": None}}
  # Of equal fees the better agent is weak, and also strong: no range, no gap.
  one_fee = routing_metrics.CostAxis.from_agents(["a", "b"], [1.0, 1.0], [0.4, 0.6])
  assert (one_fee.weak, one_fee.strong) == ("b", "b")
  assert routing_metrics.summarize([1.0], [0.6], one_fee) == {
      "aiq": None, "apgr": None, "cpt": {"50%": None, "80%": None}}
