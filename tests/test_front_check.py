"""experiments/analysis/front_check.py: the rejector's margins over the other fronts, by hand."""

import importlib.util
import json
import pathlib

import numpy as np

_PATH = pathlib.Path(__file__).resolve().parents[1] / "experiments/analysis/front_check.py"
_SPEC = importlib.util.spec_from_file_location("front_check", _PATH)
front_check = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(front_check)


TWO_AGENTS = [("cheap", 1.0, 0.5), ("dear", 3.0, 0.9)]  # the agents' front: 0.5 + 0.2 (c - 1)


def _report(rejector_points: list[tuple[float, float]], agents=TWO_AGENTS) -> dict:
  gain = {"f1": 0.06, "f1_se": 0.02}
  points = lambda pairs: [{"fee": c, "f1": q} for c, q in pairs]
  return {"metadata": {"experiment": "toy"},
          "agents": [{"agent": n, "fee": c, "f1": q} for n, c, q in agents],
          "rejector": {"f1": 0.8, "fee": 2.0, "gain_over_random": gain,
                       "shares": {"cheap": 0.5, "dear": 0.5}},
          "curve": {"rejector": {"points": points(rejector_points), "aiq": 0.8},
                    "cascade": {"points": points([(1.5, 0.62), (3.5, 0.9)]), "aiq": 0.7},
                    "agents": {"points": [], "aiq": 0.7}}}


def test_margins_are_read_on_the_fronts_over_the_fee_range():
  # Above the agents' line everywhere but at the dear end (3.0: the dear agent alone).
  s = front_check.summary(_report([(2.0, 0.8), (2.9, 0.9)]))
  margin, at = s["min_margin_over_agents"]
  assert margin == 0.0 and at == 3.0  # at 3.0 both fronts reach 0.9: never below
  assert s["share_of_range_above_agents"] == 1.0 - 1 / front_check.GRID
  assert s["share_of_range_below_agents"] == 0.0  # level at 3.0, where both are the human
  # At fee 2: the rejector 0.8, the agents' line 0.7, the cascade 0.62 + 0.28 / 3: its front
  # mixes (1.5, 0.62) with the dear agent alone (3, 0.9), not with its own (3.5, 0.9).
  grid, f1 = front_check.fronts(_report([(2.0, 0.8), (2.9, 0.9)]))
  at_2 = int(np.argmin(np.abs(grid - 2.0)))
  np.testing.assert_allclose([f1["rejector"][at_2], f1["agents"][at_2], f1["cascade"][at_2]],
                             [0.8, 0.7, 0.62 + 0.28 / 3], atol=1e-12)


def test_a_rejector_below_random_mixing_shows_a_negative_margin():
  # A middle agent (2, 0.8) lifts the agents' front above the line from cheap to dear, where
  # the rejector's point (2, 0.7) lies, and so its front: below from 1 on, most at fee 2 by
  # 0.1, level only at 3.0, the dear agent alone. (Any front reaches that line by mixing.)
  three_agents = [TWO_AGENTS[0], ("mid", 2.0, 0.8), TWO_AGENTS[1]]
  s = front_check.summary(_report([(2.0, 0.7)], three_agents))
  margin, at = s["min_margin_over_agents"]
  np.testing.assert_allclose((margin, at), (-0.1, 2.0), atol=1e-12)
  assert s["share_of_range_above_agents"] == 0.0
  assert s["share_of_range_below_agents"] == 1.0 - 1 / front_check.GRID
  assert s["operating_point"]["gain_f1"] == 0.06 and s["aiq"]["cascade"] == 0.7


def test_markdown_rows_give_the_results_and_budgets_tables(tmp_path, capsys):
  report = _report([(2.0, 0.8), (2.9, 0.9)])
  report["metadata"] |= {"rejector_reads": ["cheap"],
                         "config": {"rejector": {"inputs": ["agents"]},
                                    "eval": {"calibrate_on": "validation"}}}
  report["baselines"] = {"random": {"f1": 0.74},
                         "cascade": {"at_rejector_cost": {"f1": 0.66}},
                         "oracle": {"f1": 0.95, "fee": 1.5}}
  test = lambda fee, share: {"fee": fee, "f1": 0.77, "shares": {"cheap": 1 - share, "dear": share}}
  report["budgets"] = [
      {"budget": "fee=2.0", "kind": "fee", "agent": None, "target": 2.0,
       "held_out": {"fee": 1.998, "shares": {"cheap": 0.5, "dear": 0.5}, "standard_error": 0.04},
       "test": test(1.9, 0.45), "test_minus_target": -0.1, "test_standard_error": 0.03,
       "batch": {"test": test(2.0, 0.5), "test_minus_target": 0.0}},
      {"budget": "share:dear<=0.3", "kind": "share", "agent": "dear", "target": 0.3,
       "held_out": {"fee": 1.6, "shares": {"cheap": 0.7, "dear": 0.3}, "standard_error": 0.02},
       "test": test(1.6, 0.31), "test_minus_target": 0.01, "test_standard_error": 0.015,
       "batch": {"test": test(1.6, 0.3), "test_minus_target": 0.0}},
      {"budget": "share:nobody<=0.3", "error": "no agent 'nobody'"}]
  assert front_check.result_row(report) == (
      "| `toy` | agents (cheap) | 0.800 at 2.00 | +0.060 ± 0.020 | 0.740 | 0.660 | "
      "0.950 at 1.50 | 0.800 / 0.700 / 0.700 | 100% (0%) / 100% (0%) |")
  report["metadata"]["config"]["train"] = {"ensemble": 5}
  assert front_check.result_row(report).startswith(
      "| `toy` | agents (cheap), mean of 5 rejectors | 0.800 at 2.00 |")
  assert front_check.budget_lines(report) == [
      # Test minus calibration in standard errors of the difference: -0.098 / sqrt(0.04² +
      # 0.03²), and 0.01 / sqrt(0.02² + 0.015²).
      "| `toy` | `fee=2.0` | validation articles | fee 1.998 ± 0.040 | fee 1.900 ± 0.030 | "
      "-2.0 SE | -0.100 (-5.0%) | 0.770 |",
      "| `toy` | `fee=2.0` | test's own logits | – | fee 2.000 | – | +0.000 (+0.0%) | 0.770 |",
      "| `toy` | `share:dear<=0.3` | validation articles | dear 30.0% ± 2.0% | dear 31.0% ± 1.5% "
      "| +0.4 SE | +1.0% | 0.770 |",
      "| `toy` | `share:dear<=0.3` | test's own logits | – | dear 30.0% | – | +0.0% | 0.770 |",
      "| `toy` | `share:nobody<=0.3` | no agent 'nobody' | | | | | |"]
  path = tmp_path / "report.json"
  path.write_text(json.dumps(report))
  assert front_check.main(["--markdown", str(path)]) == 0
  out = capsys.readouterr().out
  assert out.startswith(front_check.RESULT_HEADER) and front_check.result_row(report) in out
