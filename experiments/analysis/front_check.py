"""Where a report's rejector front stands against random mixing and the cascade, fee by fee.

Reads one or more `report.json` files and prints, for each, the F1 of three
fronts at fees from the cheapest to the dearest agent: the rejector's (its
curve's points and their mixtures), the agents' own (random mixtures of single
agents: what a router must beat) and the cascade's, each read as the report's
AIQ reads it (`evaluate.routing_metrics`: sending questions straight to the
weak or the strong agent is always one of the mixtures). Then the smallest
margin of the rejector over each on that range (its cheapest end excluded,
where all three are the cheapest agent alone) and the share of the range where
it is above, below and level (within `LEVEL`: where both are the same
mixture, as at the strong agent's fee, where every front is the strong agent
alone when it is the dearest), the paired gain over random allocation at the
configured operating point, and the AIQs: the figures issue 15's targets
name. With `--markdown` it prints them instead
as the results tables of experiments/README.md: one row per report, then one
per budget.

  python experiments/analysis/front_check.py runs/squad_v1_minilm*/report/report.json
"""

import argparse
import json
import pathlib
import sys

import numpy as np

from l2d_jax.evaluate.routing_metrics import CostAxis

GRID = 200
LEVEL = 1e-6  # fronts closer than this are level: the same mixture, up to float rounding


def fronts(report: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """The fee grid and each front's F1 on it."""
  agents = report["agents"]
  axis = CostAxis.from_rows(agents)
  grid = np.linspace(axis.c_min, axis.c_max, GRID + 1)[1:]
  curves = {"rejector": report["curve"]["rejector"]["points"],
            "cascade": report["curve"]["cascade"]["points"],
            "agents": [{"fee": a["fee"], "f1": a["f1"]} for a in agents]}
  f1_on_grid = {}
  for name, points in curves.items():
    cost_F, f1_F = axis.front([p["fee"] for p in points], [p["f1"] for p in points])
    f1_on_grid[name] = np.interp(grid, cost_F, f1_F)
  return grid, f1_on_grid


def summary(report: dict) -> dict:
  grid, f1 = fronts(report)
  out = {"experiment": report["metadata"]["experiment"]}
  for other in ("agents", "cascade"):
    margin = f1["rejector"] - f1[other]
    worst = int(np.argmin(margin))
    out[f"min_margin_over_{other}"] = (float(margin[worst]), float(grid[worst]))
    out[f"share_of_range_above_{other}"] = float(np.mean(margin > LEVEL))
    out[f"share_of_range_below_{other}"] = float(np.mean(margin < -LEVEL))
  gain = report["rejector"]["gain_over_random"]
  out["operating_point"] = {"f1": report["rejector"]["f1"], "fee": report["rejector"]["fee"],
                            "gain_f1": gain["f1"], "gain_se": gain["f1_se"],
                            "shares": report["rejector"]["shares"]}
  out["aiq"] = {name: report["curve"][name]["aiq"] for name in ("rejector", "cascade", "agents")}
  return out


RESULT_HEADER = ("| experiment | reads (paid on every question) | rejector F1 at fee | gain over "
                 "random ± SE | random, same shares | cascade, same fee | oracle F1 at fee | AIQ "
                 "rejector / cascade / agents' front | fee range above (below) cascade / "
                 "agents' front |\n"
                 + "|---" * 9 + "|")
BUDGET_HEADER = ("| experiment | budget | calibration | met there ± SE | realised on test ± SE "
                 "| test − met there | test − target | F1 |\n" + "|---" * 8 + "|")


def result_row(report: dict) -> str:
  """The report's line of the results table."""
  s, base, rejector = summary(report), report["baselines"], report["rejector"]
  reads = report["metadata"].get("rejector_reads") or []
  config = report["metadata"]["config"]
  members = config.get("train", {}).get("ensemble", 1)  # reports before train.ensemble: 1
  point, aiq = s["operating_point"], s["aiq"]
  cascade = base["cascade"]["at_rejector_cost"]
  return " | ".join([
      f"| `{s['experiment']}`", " + ".join(config["rejector"]["inputs"])
      + (f" ({', '.join(reads)})" if reads else "")
      + (f", mean of {members} rejectors" if members > 1 else ""),
      f"{rejector['f1']:.3f} at {rejector['fee']:.2f}",
      f"{point['gain_f1']:+.3f} ± {point['gain_se']:.3f}", f"{base['random']['f1']:.3f}",
      "–" if cascade is None else f"{cascade['f1']:.3f}",
      f"{base['oracle']['f1']:.3f} at {base['oracle']['fee']:.2f}",
      f"{aiq['rejector']:.3f} / {aiq['cascade']:.3f} / {aiq['agents']:.3f}",
      " / ".join(f"{s[f'share_of_range_above_{other}']:.0%} "
                 f"({s[f'share_of_range_below_{other}']:.0%})" for other in ("cascade", "agents"))
      + " |"])


def budget_lines(report: dict) -> list[str]:
  """The report's budgets, two lines each: met on its calibration set, then on test's own logits.

  Each fee or share comes with its standard error, clustered by article where
  the report knew the articles (`budget.clustered_standard_error`), and how
  far test strays from the calibration set in standard errors of that
  difference (the two combined): whether other articles explain a miss.
  """
  lines = []
  calibration = {"validation": "validation articles", "rejector_train": "all of rejector_train"}[
      report["metadata"]["config"]["eval"]["calibrate_on"]]
  for row in report["budgets"]:
    if "error" in row:
      lines.append(f"| `{report['metadata']['experiment']}` | `{row['budget']}` | "
                   f"{row['error']} | | | | | |")
      continue
    fee = row["kind"] == "fee"
    form = ".3f" if fee else ".1%"
    label = "fee" if fee else row["agent"]
    with_se = lambda value, se: (f"{label} {value:{form}}"
                                 + ("" if se is None else f" ± {se:{form}}"))
    value = lambda figures: figures["fee"] if fee else figures["shares"][row["agent"]]
    for where, result, there in ((calibration, row, row["held_out"]),
                                 ("test's own logits", row["batch"], None)):
      test, miss, test_se = result["test"], result["test_minus_target"], result.get(
          "test_standard_error")
      strays = "–"
      if there is not None and there["standard_error"] is not None and test_se is not None:
        difference_se = (there["standard_error"] ** 2 + test_se ** 2) ** 0.5
        if difference_se > 0:  # else neither set strays at all
          strays = f"{(value(test) - value(there)) / difference_se:+.1f} SE"
      miss = (f"{miss:+.3f} ({miss / row['target']:+.1%})" if fee else f"{miss:+.1%}")
      lines.append(f"| `{report['metadata']['experiment']}` | `{row['budget']}` | {where} | "
                   + ("–" if there is None else with_se(value(there), there["standard_error"]))
                   + f" | {with_se(value(test), test_se)} | {strays} | {miss} | "
                   f"{test['f1']:.3f} |")
  return lines


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("reports", nargs="+", help="report.json files")
  parser.add_argument("--markdown", action="store_true",
                      help="print the results and budgets tables of experiments/README.md")
  args = parser.parse_args(argv)
  reports = [(path, json.loads(path.read_text())) for path in map(pathlib.Path, args.reports)]
  if args.markdown:
    print(RESULT_HEADER)
    print("\n".join(result_row(report) for _, report in reports))
    print()
    print(BUDGET_HEADER)
    print("\n".join(line for _, report in reports for line in budget_lines(report)))
    return 0
  for path, report in reports:
    s = summary(report)
    point = s["operating_point"]
    print(f"{s['experiment']} ({path})")
    print(f"  operating point: F1 {point['f1']:.3f} at fee {point['fee']:.3f}; gain over random "
          f"{point['gain_f1']:+.4f} +- {point['gain_se']:.4f} "
          f"({point['gain_f1'] / max(point['gain_se'], 1e-12):.1f} SE); shares "
          + ", ".join(f"{k} {v:.0%}" for k, v in point["shares"].items()))
    for other, label in (("agents", "the agents'"), ("cascade", "the cascade's")):
      margin, at = s[f"min_margin_over_{other}"]
      print(f"  front minus {label} front: smallest {margin:+.4f} (at fee {at:.3f}); above on "
            f"{s[f'share_of_range_above_{other}']:.0%} of the fee range, below on "
            f"{s[f'share_of_range_below_{other}']:.0%}, level elsewhere")
    aiq = s["aiq"]
    print(f"  AIQ: rejector {aiq['rejector']:.4f}, cascade {aiq['cascade']:.4f}, agents' front "
          f"{aiq['agents']:.4f} (rejector - agents {aiq['rejector'] - aiq['agents']:+.4f})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
