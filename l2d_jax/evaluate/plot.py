"""The accuracy–cost picture of a report: `tradeoff.png`, F1 against the normalised fee.

Drawn from a `report.build_report` dict alone: the rejector's curve (a head
per beta scale and its fee offsets: all points, its front as a line, the
configured rejector highlighted), the confidence cascade's threshold sweep
and its front, the random allocations with the same shares as each rejector
point, every agent alone as a labelled point, the agents' own front (their
best random mixtures) and the oracle. Fronts are drawn as the AIQ in the
legend reads them (`routing_metrics.CostAxis.front`): a curve's points, the
cheapest and the best agent alone, and their mixtures. Uses matplotlib's
object API with the Agg canvas (no pyplot, no display, no global backend
change).
"""

import io
import pathlib

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from l2d_jax.agents.store import atomic_write_bytes
from l2d_jax.evaluate import routing_metrics


def tradeoff_figure(report: dict) -> Figure:
  """F1 against cost (mean fee / the most expensive agent's) for the rejector and the baselines."""
  curves = report["curve"]
  scale = curves["fee_scale"]
  meta = report["metadata"]

  def xy(rows):
    rows = sorted(rows, key=lambda r: r["fee"])
    return [r["fee"] / scale for r in rows], [r["f1"] for r in rows]

  agents = report["agents"]
  axis = routing_metrics.CostAxis.from_rows(agents)

  def front_xy(rows):
    cost_F, f1_F = axis.front([r["fee"] for r in rows], [r["f1"] for r in rows])
    return cost_F / scale, f1_F

  fig = Figure(figsize=(8.5, 5.6), dpi=150, layout="constrained")
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  rejector = curves["rejector"]
  ax.plot(*xy(rejector["points"]), "o", color="C0", alpha=0.35, markersize=4,
          label="rejector: each beta scale's head, and its fee offsets")
  ax.plot(*front_xy(rejector["points"]), "-o", color="C0", linewidth=2, markersize=5,
          label=f"rejector front (its own fee {meta.get('rejector_fee', 0.0) / scale:.3f} "
                f"included), mixed with the cheapest or best agent alone{_aiq(rejector)}")
  cascade = curves["cascade"]
  ax.plot(*xy(cascade["points"]), "s", color="C1", alpha=0.3, markersize=3,
          label=f"cascade: {_mains(report)} if its confidence ≥ t, else another agent")
  ax.plot(*front_xy(cascade["points"]), "--s", color="C1", linewidth=1.5, markersize=3,
          label=f"cascade front over all of them{_aiq(cascade)}")
  ax.plot(*front_xy(agents), "--", color="0.2", linewidth=1,
          label=f"agents' own front: random mixtures of single agents{_aiq(curves['agents'])}")
  ax.plot(*xy(curves["random"]["points"]), ":", color="0.45", marker="x", markersize=4,
          label="random allocation, same shares as each rejector point")
  chosen = report["rejector"]
  ax.plot(chosen["fee"] / scale, chosen["f1"], "D", color="C0", markeredgecolor="black",
          markersize=9, zorder=5, label=f"rejector at beta scale {chosen['beta_scale']:g}")
  oracle = report["baselines"]["oracle"]
  ax.plot(oracle["fee"] / scale, oracle["f1"], "*", color="C3", markeredgecolor="black",
          markersize=14, zorder=5, label="oracle (cheapest agent per question)")
  for i, agent in enumerate(report["agents"]):
    ax.plot(agent["fee"] / scale, agent["f1"], "o", color="black", markersize=7, zorder=6,
            label="each agent alone" if i == 0 else None)
    ax.annotate(agent["agent"], (agent["fee"] / scale, agent["f1"]), xytext=(6, -12),
                textcoords="offset points", fontsize=9)
  # Decisions are paid too, so a cascade deferring everything lies beyond 1.
  widest = max(r["fee"] for r in (*rejector["points"], *cascade["points"], report["rejector"])
               ) / scale
  ax.set_xlim(-0.03, max(1.06, widest + 0.03))
  unit = "" if scale == 1 else f" (1 = {scale:g} cost units)"
  ax.set_xlabel(f"mean consultation fee per question, as a fraction of the most expensive "
                f"agent's{unit}")
  ax.set_ylabel("F1 on the test split")
  ax.set_title(f"Accuracy against cost: rejector and baselines "
               f"({meta['num_questions']} test questions)")
  ax.grid(True, alpha=0.3)
  ax.legend(loc="best", fontsize=8, framealpha=0.9)
  return fig


def _mains(report: dict) -> str:
  """The cascade's main models, "a or b"."""
  return " or ".join(report["baselines"]["cascade"]["mains"])


def _aiq(summary: dict) -> str:
  """", AIQ 0.xxx" for a legend, or nothing where the AIQ is undefined."""
  return "" if summary["aiq"] is None else f", AIQ {summary['aiq']:.3f}"


def write_tradeoff(report: dict, path: str | pathlib.Path) -> pathlib.Path:
  """Writes the report's `tradeoff_figure` as a PNG to `path` (atomically); returns the path."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  buffer = io.BytesIO()
  tradeoff_figure(report).savefig(buffer, format="png")
  atomic_write_bytes(path, buffer.getvalue())
  return path
