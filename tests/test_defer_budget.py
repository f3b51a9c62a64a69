"""Budgets: parsing, exact operating points on hand-made logits, and held-out-to-test accuracy."""

import json

import numpy as np
import pytest

from l2d_jax.defer import budget

NAMES = ("cheap", "mid", "dear", "human")
FEES = np.array([0.17, 0.5, 1.0, 3.0])


def two_agents(margins, fixed_fee: float = 0.0) -> budget.Calibration:
  """Agent "a" (fee 0) has logit 0; agent "b" (fee 1) has the given logits."""
  margins = np.asarray(margins, np.float64)
  return budget.Calibration(("a", "b"), np.stack([np.zeros_like(margins), margins], axis=1),
                            np.array([0.0, 1.0]), fixed_fee)


def test_parse_budget():
  assert budget.parse_budget(" fee=1.2 ") == budget.Budget("fee=1.2", "fee", 1.2, None)
  assert budget.parse_budget("share:human<=0.3") == budget.Budget("share:human<=0.3", "share",
                                                                  0.3, "human")
  assert budget.parse_budget("share:a<=b<=1").agent == "a<=b"  # the last "<=" splits
  for spec in ("fee:1.2", "fee=", "fee=-1", "fee=nan", "share:human<=1.5", "share:<=0.3",
               "share:human=0.3", "human<=0.3"):
    with pytest.raises(budget.BudgetError, match="expected 'fee=F'"):
      budget.parse_budget(spec)


def test_a_fee_budget_is_the_most_spending_lambda_within_it():
  # "b" is chosen where its margin exceeds lambda (a tie goes to "a"): the mean fee is the
  # share of margins above lambda.
  calibration = two_agents([0.5, 1.0, 2.0, 3.0])
  for target, lam, alloc in ((0.5, 1.0, [0, 0, 1, 1]), (0.6, 1.0, [0, 0, 1, 1]),
                             (0.25, 2.0, [0, 0, 0, 1]), (0.0, 3.0, [0, 0, 0, 0])):
    point = budget.operating_point(f"fee={target}", calibration)
    assert point.knob == pytest.approx(lam, abs=1e-9)
    np.testing.assert_array_equal(point.route(calibration.logits_ExJ), alloc)
    assert point.fee == pytest.approx(np.mean(alloc))
    np.testing.assert_allclose(point.offset_J, [0.0, -point.knob])
  # Spending everything: any lambda below the smallest margin; the search's floor.
  everything = budget.operating_point("fee=1", calibration)
  assert everything.fee == 1.0 and everything.knob < 0.5
  # Spending more than the rejector's own choice takes a negative lambda.
  shy = two_agents([-1.0, -0.5, 0.5, 1.0])
  point = budget.operating_point("fee=0.75", shy)
  assert point.knob == pytest.approx(-1.0, abs=1e-9) and point.fee == 0.75
  # Standard error of the mean fee over the four questions (fees 0, 0, 1, 1).
  assert budget.operating_point("fee=0.5", calibration).standard_error == pytest.approx(
      np.std([0, 0, 1, 1], ddof=1) / 2)


def test_a_fee_out_of_reach_names_the_reachable_range():
  calibration = two_agents([0.5, 1.0, 2.0, 3.0], fixed_fee=0.2)
  assert calibration.reachable_fees() == (0.2, 1.2)
  for target in (0.1, 1.3):
    with pytest.raises(budget.BudgetError, match=r"out of reach: .* lies in \[0.2, 1.2\].*0.2 of "
                                                 r"it paid on every question"):
      budget.operating_point(f"fee={target}", calibration)
  # The ends themselves are reachable; fees count the fixed part.
  assert budget.operating_point("fee=0.2", calibration).fee == pytest.approx(0.2)
  assert budget.operating_point("fee=1.2", calibration).fee == pytest.approx(1.2)
  assert budget.operating_point("fee=0.7", calibration).fee == pytest.approx(0.7)


def test_a_share_cap_lowers_one_agents_logit_by_the_least_delta():
  # Agent 2's margin over the best other agent: -1, 0.2, 0.4, 0.9, 1.5 (four of five go to it).
  margins = np.array([-1.0, 0.2, 0.4, 0.9, 1.5])
  logits = np.stack([np.zeros(5), np.full(5, -3.0), margins], axis=1)
  calibration = budget.Calibration(("a", "b", "c"), logits, [0.1, 0.5, 1.0])
  for cap, delta, share in ((0.5, 0.4, 0.4), (0.8, 0.0, 0.8), (1.0, 0.0, 0.8), (0.0, 1.5, 0.0),
                            (0.25, 0.9, 0.2)):
    point = budget.operating_point(f"share:c<={cap}", calibration)
    assert point.knob == pytest.approx(delta, abs=1e-9)
    assert point.shares_J[2] == pytest.approx(share)
    np.testing.assert_allclose(point.offset_J, [0.0, 0.0, -point.knob])
    # The share's standard error: the sample standard deviation of 5 indicators over sqrt(5).
    assert point.standard_error == pytest.approx(np.sqrt(share * (1 - share) / 4))
  with pytest.raises(budget.BudgetError, match="names no agent of this router: a, b, c"):
    budget.operating_point("share:human<=0.3", calibration)
  alone = budget.Calibration(("solo",), np.zeros((3, 1)), [1.0])
  assert budget.operating_point("share:solo<=1", alone).knob == 0.0
  with pytest.raises(budget.BudgetError, match="only agent"):
    budget.operating_point("share:solo<=0.5", alone)


def test_each_questions_fee_falls_as_lambda_rises():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(500, 4)) * 2
  fees_LxE = np.stack([FEES[budget.route(logits, -lam * FEES)]
                       for lam in np.linspace(-50, 50, 401)])
  assert (np.diff(fees_LxE, axis=0) <= 0).all()
  assert (fees_LxE[0] == 3.0).all() and (fees_LxE[-1] == 0.17).all()


def _synthetic(num_questions: int, seed: int) -> np.ndarray:
  """Logits of a rejector that leans to the human and the mid-sized agent, with spread."""
  rng = np.random.default_rng(seed)
  return rng.normal(size=(num_questions, len(NAMES))) * 1.5 + np.array([0.0, 0.5, 0.2, 1.0])


def test_held_out_operating_points_carry_over_to_test_questions():
  calibration = budget.Calibration(NAMES, _synthetic(20_000, 1), FEES, fixed_fee=0.1)
  test_logits = _synthetic(20_000, 2)
  for target in (0.4, 1.2, 2.5):
    point = budget.operating_point(f"fee={target}", calibration)
    # On the calibration it spends up to the target, short by at most one question's switch.
    assert target - (FEES.max() - FEES.min()) / 20_000 <= point.fee <= target
    realised = calibration.fees_E(point.route(test_logits)).mean()
    assert abs(realised - target) / target < 0.05
    assert abs(realised - point.fee) < 4 * point.standard_error
  for cap in (0.05, 0.3):
    point = budget.operating_point(f"share:human<={cap}", calibration)
    assert cap - 1 / 20_000 <= point.shares_J[3] <= cap
    realised = np.mean(point.route(test_logits) == 3)
    assert realised <= cap + 0.01
    assert abs(realised - point.shares_J[3]) < 4 * point.standard_error


def test_standard_errors_clustered_by_article():
  # Residuals from the mean 0.5: articles a, b, c sum to 1, -1, 0: sqrt(3 / 2 * 2) / 6.
  values = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
  groups = ["a", "a", "b", "b", "c", "c"]
  assert budget.clustered_standard_error(values, groups) == pytest.approx(np.sqrt(3) / 6)
  assert budget.clustered_standard_error(values) == pytest.approx(np.std(values, ddof=1) / 6**0.5)
  assert budget.clustered_standard_error(values, ["a"] * 6) is None
  assert budget.clustered_standard_error(np.array([0.4])) is None
  # An operating point's error is clustered when its calibration knows the articles.
  calibration = two_agents([1.0, 2.0, 0.5, 0.7, 3.0, 0.1])  # fee=0.5: b at 1, 2, 3
  clustered = budget.Calibration(calibration.agent_names, calibration.logits_ExJ,
                                 calibration.fee_J, groups_E=groups)
  assert budget.operating_point("fee=0.5", clustered).standard_error == pytest.approx(
      np.sqrt(3) / 6)
  assert budget.operating_point("share:b<=0.5", clustered).standard_error == pytest.approx(
      np.sqrt(3) / 6)
  with pytest.raises(ValueError, match="2 groups for 6 values"):
    budget.clustered_standard_error(values, ["a", "b"])
  with pytest.raises(ValueError, match="non-empty vector"):
    budget.clustered_standard_error(np.array([]))
  with pytest.raises(budget.BudgetError, match=r"one article per question \(6\), got 2"):
    budget.Calibration(("a", "b"), calibration.logits_ExJ, [0.0, 1.0], groups_E=["x", "y"])


def test_the_clustered_error_covers_the_shift_between_articles():
  # 400 articles of 50 questions; each shifts the human's logit by its own N(0, 1): at fixed
  # offsets the mean fee of 10 articles strays by far more than 500 independent questions'.
  rng = np.random.default_rng(4)
  shift_A = rng.normal(size=400)
  logits = _synthetic(20_000, 5) + np.outer(np.repeat(shift_A, 50), [0, 0, 0, 1])
  groups = np.repeat(np.arange(400), 50).astype(str)
  point = budget.operating_point("fee=1.2", budget.Calibration(NAMES, logits[:500], FEES,
                                                               groups_E=groups[:500]))
  iid = budget.operating_point("fee=1.2", budget.Calibration(NAMES, logits[:500], FEES))
  fee_A = FEES[point.route(logits)].reshape(400, 50).mean(axis=1)
  spread = fee_A[10:].reshape(39, 10).mean(axis=1).std(ddof=1)  # 39 sets of 10 other articles
  assert 0.6 < point.standard_error / spread < 1.6
  assert iid.standard_error < 0.5 * spread


def test_calibration_round_trips_through_json_and_names_bad_records():
  calibration = budget.Calibration(NAMES, _synthetic(7, 3).astype(np.float32), FEES, 0.05,
                                   source="7 held-out questions", groups_E=list("aabbccd"))
  again = budget.Calibration.from_json(json.loads(json.dumps(calibration.to_json())))
  assert again.agent_names == NAMES and again.source == "7 held-out questions"
  assert again.groups_E == tuple("aabbccd")
  older = {k: v for k, v in calibration.to_json().items() if k != "groups"}
  assert budget.Calibration.from_json(older).groups_E is None  # exports before articles
  np.testing.assert_array_equal(again.logits_ExJ, calibration.logits_ExJ)
  np.testing.assert_array_equal(again.fee_J, FEES)
  assert again.fixed_fee == 0.05
  record = calibration.to_json()
  for bad in ("aabbccd", [1, 2, 3, 4, 5, 6, 7], ["a", None, "b", "b", "c", "c", "d"]):
    with pytest.raises(budget.BudgetError, match="'groups' must be a list of article names"):
      budget.Calibration.from_json({**record, "groups": bad})
  with pytest.raises(budget.BudgetError, match="format version 1"):
    budget.Calibration.from_json({**record, "format_version": 2})
  with pytest.raises(budget.BudgetError, match="malformed calibration record.*'fees'"):
    budget.Calibration.from_json({k: v for k, v in record.items() if k != "fees"})
  with pytest.raises(budget.BudgetError, match=r"shape \[E >= 1, 4\]"):
    budget.Calibration.from_json({**record, "logits": [[0.0, 1.0]]})
  with pytest.raises(budget.BudgetError, match="finite non-negative"):
    budget.Calibration(NAMES, np.zeros((2, 4)), [0.1, -1.0, 1.0, 3.0])


def test_a_fee_sweep_runs_from_the_cheapest_to_the_dearest_allocation():
  """Two agents, fees 0 and 1: the sweep is a threshold on the logit difference d, sending
  the k questions with the largest d to agent 1 at the target fee k / 4."""
  d_E = np.array([0.3, -2.0, 1.5, 0.7])
  calibration = budget.Calibration(("cheap", "dear"), np.stack([np.zeros(4), d_E], axis=1),
                                   [0.0, 1.0])
  points = budget.fee_sweep(calibration, 5)
  assert [p.budget.value for p in points] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
  assert [p.fee for p in points] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
  order = np.argsort(-d_E)
  for k, point in enumerate(points):
    routed = point.route(calibration.logits_ExJ)
    assert sorted(np.flatnonzero(routed == 1)) == sorted(order[:k])
  with pytest.raises(ValueError, match="at least 2 points"):
    budget.fee_sweep(calibration, 1)
  # Every route costs the same: one point, the router's own choice.
  flat = budget.Calibration(("x", "y"), calibration.logits_ExJ, [0.5, 0.5])
  (point,) = budget.fee_sweep(flat, 5)
  assert point.fee == 0.5 and point.knob == 0
  np.testing.assert_array_equal(point.route(flat.logits_ExJ), np.argmax(flat.logits_ExJ, axis=1))
