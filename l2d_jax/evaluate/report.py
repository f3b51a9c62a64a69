"""The evaluation report: each agent alone, the rejector, the baselines, the accuracy–cost curves.

`build_report` gathers, on one test split, the rows of `baselines` and the
curve summaries of `curve` into one JSON-ready dict with the top-level keys
`metadata`, `agents`, `rejector`, `baselines` (random, cascade, oracle) and
`curve` (rejector, cascade, random, and the agents' own front) and `budgets`
(what each configured budget's operating point realises on test,
`evaluate.budgets`). Each curve
summary also carries the names the routing literature uses
(`routing_metrics`: RouterBench's AIQ, RouteLLM's APGR and CPT), read over one
cost axis for all. `markdown` renders the same tables and
`write_report` writes `report.json` and `report.md`, each atomically.

Conventions: EM and F1 are fractions in [0, 1]; `fee` is the mean consultation
fee per question in cost units (`fee_j` before the beta scale); `flops` the
mean FLOPs per question; `deferral_loss` the mean cost `alpha_j * loss_j +
beta_scale * fee_j` of the chosen agent, always at the configured beta scale
(also for the curve's points trained at other scales), so that rows compare.
Agent 0 is the main model; the best agent is the one with the highest F1.
"""

import json
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from l2d_jax.agents.store import atomic_write_bytes
from l2d_jax.defer import budget as budget_lib
from l2d_jax.evaluate import baselines
from l2d_jax.evaluate import budgets as budgets_lib
from l2d_jax.evaluate import curve as curve_lib
from l2d_jax.evaluate import routing_metrics

_METRIC_HEADERS = {"em": "EM", "f1": "F1", "fee": "fee", "flops": "FLOPs/question",
                   "deferral_loss": "deferral loss"}


def build_report(table: baselines.AgentTable, conf_E: np.ndarray, rejector_alloc_E: np.ndarray,
                 sweep: Sequence[tuple[float, np.ndarray]], *,
                 cascade_from: Mapping[int, np.ndarray] | None = None, cascade_points: int = 21,
                 random_seeds: Sequence[int] = (),
                 rejector_fee: float = 0.0, rejector_flops: float = 0.0,
                 rejector_paid: Sequence[int] = (), budgets: Sequence[str] = (),
                 calibration: budget_lib.Calibration | None = None,
                 rejector_logits_ExJ: np.ndarray | None = None, fee_offsets: int = 0,
                 test_groups_E: Sequence[str] | None = None, metadata: dict | None = None) -> dict:
  """The whole evaluation of a rejector on a test split, as a JSON-ready dict.

  Args:
    table: the agents' test scores and costs at the configured beta scale.
    conf_E: the main model's confidence per question (best-span probability):
      the cascade from it, to each other agent in turn, at `cascade_points`
      quantile thresholds (`baselines.quantile_thresholds`).
    rejector_alloc_E: the rejector's allocation at the configured beta scale.
    sweep: (beta scale, allocation) pairs of rejectors trained at other fee
      scales: points of the rejector's accuracy–cost curve.
    cascade_from: other main models, agent index (not 0) -> its confidence
      per question: a cascade from each, built as the main model's, and all
      their rows make one cascade curve (its front is their joint front), so
      a rejector that reads an agent's features meets the cascade on that
      agent's confidence.
    cascade_points: how many quantiles of each main model's confidence serve
      as its thresholds.
    random_seeds: seeds of sampled random allocations, summarised beside the
      exact expectation the report compares with.
    rejector_fee: what running the rejector costs per question (fee units),
      paid on every question by its rows and curve, as a cascade pays its
      main model; 0 leaves routing free (the usual L2D convention).
    rejector_flops: the rejector's FLOPs per question.
    rejector_paid: the agents whose features the rejector reads: each is paid
      on every question by its rows and curve (`baselines.rejector_row`).
    budgets: budget specs ("fee=1.2", "share:human<=0.3"), each met on
      `calibration` (the rejector's held-out logits) and applied to
      `rejector_logits_ExJ` (its test logits), both needed when any is given.
    fee_offsets: further curve points, rows with a `lambda`: the rejector's own
      test logits routed at this many mean fees evenly spaced from its cheapest
      to its dearest allocation (`budget.fee_sweep`, what `route --budget fee=F`
      does). A retrained head per beta scale gives a few points that the front
      can only join by mixing; offsets trace the trained router's whole curve,
      as a cascade's thresholds trace its own. No label is read to place them.
    test_groups_E: each test question's article, to cluster the standard
      errors of what the budgets realise on test by.
    metadata: extra entries for `metadata` (data, config, fingerprints...).
  """
  if not sweep:
    raise ValueError("the accuracy–cost curve needs at least one (beta scale, allocation) pair")
  if budgets and (calibration is None or rejector_logits_ExJ is None):
    raise ValueError("budgets need the calibration and the rejector's test logits")
  if fee_offsets and rejector_logits_ExJ is None:
    raise ValueError("fee offsets need the rejector's test logits")
  if 0 in (cascade_from or {}):
    raise ValueError("cascade_from names other main models than agent 0, whose confidence is "
                     "conf_E")
  if rejector_logits_ExJ is not None and (
      np.shape(rejector_logits_ExJ) != (table.num_questions, table.num_agents)):
    raise ValueError(f"rejector_logits_ExJ has shape {np.shape(rejector_logits_ExJ)}, not "
                     f"(questions, agents) = {(table.num_questions, table.num_agents)}")
  agents = baselines.agent_rows(table)
  best = max(range(table.num_agents), key=lambda j: (agents[j]["f1"], -j))
  max_fee = float(table.fee_J.max())
  ends = {"max_cost": max_fee, "f1_main": agents[0]["f1"], "f1_best": agents[best]["f1"],
          "best_cost": agents[best]["fee"]}

  routed = lambda alloc_E: baselines.rejector_row(alloc_E, table, rejector_fee, rejector_flops,
                                                  rejector_paid)
  rejector = {"beta_scale": table.beta_scale, **routed(rejector_alloc_E),
              "gain_over_random": baselines.gain_over_random(rejector_alloc_E, table)}
  points = [(float(scale), None, alloc_E) for scale, alloc_E in sweep]  # (beta, lambda, alloc)
  if fee_offsets:
    fixed_fee, route_fee_J = baselines.routing_fees(table.fee_J, rejector_fee, rejector_paid)
    on_test = budget_lib.Calibration(tuple(table.names), rejector_logits_ExJ, route_fee_J,
                                     fixed_fee, source="test logits")
    points += [(table.beta_scale, point.knob, point.route(rejector_logits_ExJ))
               for point in budget_lib.fee_sweep(on_test, fee_offsets)]
  sweep_rows = [{"beta_scale": scale, "lambda": lam, **routed(alloc_E)}
                for scale, lam, alloc_E in points]
  conf_by_main = {0: conf_E, **(cascade_from or {})}
  cascade = curve_lib.summarize(
      [row for main, main_conf_E in conf_by_main.items()
       for row in baselines.cascade(main_conf_E, table, baselines.quantile_thresholds(
           main_conf_E, cascade_points), main=main)], **ends)
  mains = [table.names[j] for j in conf_by_main]
  random_rows = [{"beta_scale": row["beta_scale"], "lambda": row["lambda"],
                  **baselines.random_allocation(_shares(row), table)} for row in sweep_rows]
  for row, (_, _, alloc_E) in zip(sweep_rows, points):
    row["gain_over_random"] = baselines.gain_over_random(alloc_E, table)
  cascade_at = curve_lib.row_at_cost(curve_lib.front_rows(cascade), rejector["fee"])
  fee_J, f1_J = [row["fee"] for row in agents], [row["f1"] for row in agents]
  axis = routing_metrics.CostAxis.from_agents(table.names, fee_J, f1_J)
  field_names = lambda rows: routing_metrics.summarize(
      [r["fee"] for r in rows], [r["f1"] for r in rows], axis)
  rejector_curve = curve_lib.summarize(sweep_rows, **ends)

  return {
      "metadata": {
          "num_questions": table.num_questions,
          "agents": list(table.names),
          "main_agent": table.names[0],
          "best_agent": table.names[best],
          "beta_scale": table.beta_scale,
          "alpha": table.alpha_J.tolist(),
          "fee": table.fee_J.tolist(),
          "flops": table.flops_J.tolist(),
          "cost_axis": "mean fee per question / the most expensive agent's fee "
                       f"({max_fee:g} cost units)",
          "rejector_fee": float(rejector_fee),
          "rejector_flops": float(rejector_flops),
          "rejector_reads": [table.names[j] for j in rejector_paid],
          "random": "exact expectation of a random allocation with the rejector's shares",
          "cascade": f"a main model ({', '.join(mains)}) answers when its confidence >= "
                     "threshold, otherwise one other agent, each in turn (front over all "
                     "of them); a deferred question pays the main model's fee too",
          "routing_metrics": {
              "weak_agent": axis.weak, "strong_agent": axis.strong,
              "aiq_cost_range": [axis.c_min, axis.c_max],
              "apgr_cost_range": [axis.c_weak, axis.c_strong],
              "definition": "AIQ (RouterBench): mean F1 of a curve's front over the fees "
                            "from the cheapest to the dearest agent; APGR (RouteLLM): mean "
                            "share of the weak-to-strong F1 gap it recovers over the fees from "
                            "the weak to the strong agent; CPT(x): the least fee recovering x "
                            "of the gap. Every front includes the weak and the strong agent "
                            "alone.",
          },
          **(metadata or {}),
      },
      "agents": agents,
      "rejector": rejector,
      "baselines": {
          "random": baselines.random_allocation(_shares(rejector), table, random_seeds),
          "cascade": {"mains": mains,
                      "experts": list(dict.fromkeys(row["expert"] for row in cascade["points"])),
                      "at_rejector_cost": cascade_at},
          "oracle": baselines.oracle(table),
      },
      "budgets": budgets_lib.budget_rows(
          budgets, calibration, rejector_logits_ExJ, table, rejector_fee=rejector_fee,
          rejector_flops=rejector_flops, rejector_paid=rejector_paid,
          test_groups_E=test_groups_E) if budgets else [],
      "curve": {
          "fee_scale": max_fee,
          "rejector": {**rejector_curve, **field_names(sweep_rows)},
          "cascade": {**cascade, **field_names(cascade["points"])},
          "random": {"points": random_rows},
          "agents": {"pareto_front": [{"agent": table.names[j], "fee": fee_J[j], "f1": f1_J[j]}
                                      for j in curve_lib.pareto_front(fee_J, f1_J)],
                     **field_names(agents)},
      },
  }


def _shares(row: dict) -> np.ndarray:
  return np.array(list(row["shares"].values()))


def markdown(report: dict) -> str:
  """The report's tables in markdown: agents, rejector against the baselines, curves, sweeps."""
  meta = report["metadata"]
  names = meta["agents"]
  base = report["baselines"]
  lines = [
      "# Learning-to-defer evaluation", "",
      f"{meta['num_questions']} test questions, {len(names)} agents (main: {meta['main_agent']}, "
      f"best: {meta['best_agent']}). Costs `alpha * loss + beta_scale * fee` at beta scale "
      f"{meta['beta_scale']:g}; `fee` is the mean fee paid per question in cost units (deciding "
      "included: a cascade's main model, the rejector), `deferral loss` the mean cost of the "
      "agent that answered; EM and F1 are fractions.", "",
      "## Agents", "",
      *_table(["agent"], [[row["agent"]] for row in report["agents"]], report["agents"]), "",
      "## Rejector against the baselines", "",
      f"Rejector: its own fee {meta.get('rejector_fee', 0.0):.4g} per question "
      f"({meta.get('rejector_flops', 0.0):.3g} FLOPs) is paid on every question, in this "
      f"table's fee and on its curve (the deferral loss stays the answering agent's cost). "
      f"Random: {meta['random']}, which pays no rejector. "
      f"Cascade: {meta['cascade']}, the best threshold mixture at a fee <= the rejector's "
      "(interpolated on its Pareto front).", "",
  ]
  cascade_at = base["cascade"]["at_rejector_cost"]
  allocations = [("rejector", report["rejector"]), ("random (same shares)", base["random"]),
                 ("cascade (best at fee ≤ rejector's)", cascade_at), ("oracle", base["oracle"])]
  lines += _table(["allocation"], [[label] for label, _ in allocations],
                  [row for _, row in allocations], names)
  gain = report["rejector"]["gain_over_random"]
  lines += ["", "Rejector minus random at the same shares, mean of the per-question paired "
            f"differences ± its standard error: F1 {_signed(gain, 'f1')}, deferral loss "
            f"{_signed(gain, 'deferral_loss')}."]
  lines += _budgets_section(report)
  lines += ["", "## Accuracy–cost curves", "",
            f"Cost axis: {meta['cost_axis']}. AUC: area under the Pareto front's F1 over the "
            "normalised cost from 0 to 1, flat beyond its ends. Gap recovered at q of the best "
            "agent's fee: (F1 - F1 main) / (F1 best - F1 main), F1 the best reachable at that "
            "fee.", "",
            "| curve | points | on front | AUC | gap recovered 25% | 50% | 75% |",
            "|---|---|---|---|---|---|---|"]
  for name in ("rejector", "cascade"):
    summary = report["curve"][name]
    gaps = [_fmt(g["recovered"]) for g in summary["gap_recovered"].values()]
    lines.append(f"| {name} | {len(summary['points'])} | {len(summary['pareto_front'])} | "
                 f"{_fmt(summary['auc'])} | " + " | ".join(gaps) + " |")
  lines += _routing_metrics_table(report)
  for name, keys in (("rejector", ("beta_scale", "lambda")),
                     ("cascade", ("main", "expert", "threshold"))):
    summary = report["curve"][name]
    on_front = {p["index"] for p in summary["pareto_front"]}
    lines += ["", f"## {name.capitalize()} curve points", ""]
    if name == "rejector":
      lines += ["Each beta scale's own head (lambda –)"
                + (", then the configured rejector under fee offsets `-lambda * fee` on its "
                   "logits (what `route --budget fee=F` applies)"
                   if any(p["lambda"] is not None for p in summary["points"]) else "")
                + ". F1 gain: over random allocation with the point's own shares (± standard "
                "error).", ""]
    lines += _table([k.replace("_", " ") for k in keys] + ["front"]
                    + (["F1 gain"] if name == "rejector" else []),
                    [[*(_lead(row[k]) for k in keys), "*" if i in on_front else "",
                      *([_signed(row["gain_over_random"], "f1")] if name == "rejector" else [])]
                     for i, row in enumerate(summary["points"])], summary["points"], names)
  return "\n".join(lines) + "\n"


def _budgets_section(report: dict) -> list[str]:
  """What each budget's operating point realises on test, beside its target and held-out figures."""
  rows = report["budgets"]
  if not rows:
    return []
  met = [row for row in rows if "error" not in row]
  calibration = report["metadata"].get("budget_calibration", "held-out questions")
  lines = ["", "## Budgets", "",
           f"Each budget is met on {calibration} by one offset per agent on the rejector's "
           "logits: `fee=F` subtracts lambda * fee from each agent's, with the most spending "
           "lambda whose mean fee there is at most F (deciding included); `share:A<=S` subtracts "
           "delta from A's alone, the least that keeps A's share there at most S. The rows are "
           "what those offsets realise on test; the calibration figure's ± is its standard error "
           "at that size, clustered by article where the calibration knows them: how far as "
           "many other articles may stray by sampling alone; test − target's is test's own. "
           "The rows \"on test\" are the "
           "same budget met on the test questions' own logits, no label read, as `l2d-jax route "
           "--budget-on batch` meets it on the questions it routes.", ""]
  if met:
    lines += _table(
        ["budget", "operating point", "calibration", "test − target"],
        [cells for row in met for cells in (
            [f"`{row['budget']}`", _operating_point(row), _held_out(row), _miss(row)],
            [f"`{row['budget']}` on test", _operating_point(row | row["batch"]), "–",
             _miss(row["batch"])])],
        [test for row in met for test in (row["test"], row["batch"]["test"])],
        report["metadata"]["agents"])
  lines += [f"- `{row['budget']}`: {row['error']}" for row in rows if "error" in row]
  return lines


def _operating_point(row: dict) -> str:
  """lambda of a fee budget, delta and its agent of a share cap."""
  if row["kind"] == "fee":
    return f"lambda {row['lambda']:.4g}"
  return f"delta {row['delta']:.4g} on {row['agent']}"


def _miss(result: dict) -> str:
  """The realised fee or share minus the target, ± test's own standard error where known."""
  se = result.get("test_standard_error")
  return f"{result['test_minus_target']:+.4f}" + ("" if se is None else f" ± {se:.4f}")


def _held_out(row: dict) -> str:
  """The held-out fee or capped share, ± its standard error."""
  held = row["held_out"]
  value = held["fee"] if row["kind"] == "fee" else held["shares"][row["agent"]]
  se = held["standard_error"]
  return f"{value:.4f}" + ("" if se is None else f" ± {se:.4f}")


def _routing_metrics_table(report: dict) -> list[str]:
  """The curves' AIQ, APGR and CPT, with the axis they are read over."""
  axis = report["metadata"]["routing_metrics"]
  (c_min, c_max), (c_weak, c_strong) = axis["aiq_cost_range"], axis["apgr_cost_range"]
  levels = list(report["curve"]["agents"]["cpt"])
  lines = ["", "### In the routing literature's terms", "",
           f"AIQ (RouterBench): the mean F1 of a curve's front over the fees {c_min:.4g} to "
           f"{c_max:.4g} (cheapest to dearest agent). APGR (RouteLLM): the mean share of the F1 "
           f"gap from the weak agent ({axis['weak_agent']}, the cheapest) to the strong one "
           f"({axis['strong_agent']}, the best) that the front recovers over the fees "
           f"{c_weak:.4g} to {c_strong:.4g}. CPT(x): the least fee recovering x of that gap "
           "(in brackets, as a fraction of the way from the weak agent's fee to the strong "
           "one's: RouteLLM's share of calls to the strong model). Every front includes "
           "sending questions straight to the weak or the strong agent, unread. The agents' "
           "own front is the best random mixtures of single agents (RouterBench's zero "
           "router).", "",
           "| curve | AIQ | APGR | " + " | ".join(f"CPT({x})" for x in levels) + " |",
           "|---|---|---|" + "---|" * len(levels)]
  for name, label in (("rejector", "rejector"), ("cascade", "cascade"),
                      ("agents", "agents' own front")):
    summary = report["curve"][name]
    cpts = [("–" if c is None else f"{c['fee']:.4f} ({c['fraction']:.2f})")
            for c in summary["cpt"].values()]
    lines.append(f"| {label} | {_fmt(summary['aiq'])} | {_fmt(summary['apgr'])} | "
                 + " | ".join(cpts) + " |")
  return lines


def _signed(gain: dict, key: str) -> str:
  """`+0.0123 ± 0.0040`: a gain and its standard error."""
  se = gain[f"{key}_se"]
  return f"{gain[key]:+.4f}" + ("" if se is None else f" ± {se:.4f}")


def _lead(value) -> str:
  """A lead cell: a name as it is, a number to 4 significant digits, None as a dash."""
  if value is None:
    return "–"
  return value if isinstance(value, str) else f"{value:.4g}"


def _table(lead_headers: list[str], lead_cells: list[list[str]], rows: list[dict | None],
           share_names: Sequence[str] = ()) -> list[str]:
  """Markdown table lines: the lead columns, then the metrics and (optionally) the shares."""
  headers = lead_headers + list(_METRIC_HEADERS.values()) + [f"share {n}" for n in share_names]
  lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
  for lead, row in zip(lead_cells, rows):
    if row is None:
      cells = ["–"] * (len(headers) - len(lead))
    else:
      cells = [_fmt(row[k], k) for k in _METRIC_HEADERS]
      cells += [_fmt(row["shares"][n]) for n in share_names]
    lines.append("| " + " | ".join(lead + cells) + " |")
  return lines


def _fmt(value, key: str = "") -> str:
  if value is None:
    return "–"
  if key == "flops":
    return f"{value:.3g}"
  return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_report(report: dict, out_dir: str | pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes `report.json` and `report.md` into `out_dir` (each atomically); returns their paths."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  json_path, md_path = out_dir / "report.json", out_dir / "report.md"
  atomic_write_bytes(json_path, (json.dumps(report, indent=1, allow_nan=False) + "\n").encode())
  atomic_write_bytes(md_path, markdown(report).encode("utf-8"))
  return json_path, md_path
