"""`l2d-jax route`: assigns each question of a SQuAD-format file to an agent, from an export alone.

Everything comes from the export directory (`export.bundle`): the tokenizer
saved there (checked against the fingerprint the router was exported with), the
StableHLO routing function and the agents' names and fees. No training workdir,
checkpoint or agent store is read, so a directory copied to another machine
routes the same way. Writes `{question id: agent name}` and prints how the
questions were shared out and what they cost in fees.

A router that reads model agents' own features (`router.json`'s `sources`) gets
them from `--agent-features FILE` (`agents.feature_file`, by question id), or
else computes them with the agents' functions exported beside it
(`export.agent_features`); it prints which. Those agents run on every question,
and the fees printed pay them so.

`--budget fee=1.2` or `--budget share:human<=0.3` routes at an operating point
instead of the rejector's own choice (`defer.budget`): the offsets on its
logits are met on the export's `calibration.json`, the rejector's logits on
questions it never trained on, so any budget can be asked for from the export
alone; it prints the held-out figures beside what these questions realise.
Held-out questions are not these questions: where they differ (other articles,
harder ones), so does the realised fee. A fee or a share depends on the routes
alone, so with `--budget-on batch` the offsets are met on the routed questions'
own logits instead: the file as a whole spends the most it can within the
budget, as closely as its number of questions allows (one question can only
cost one agent's fee), and each question's route depends on the others.

The export is verified against its manifest before anything is read from it
(`loader.verify_export`), and a router that gives NaN or infinite logits routes
nothing: a damaged export, like bad data, is one line on stderr naming the file
(`l2d_jax.cli`), and no routes file is written.
"""

import argparse
import dataclasses
import json
import pathlib
import sys

import numpy as np

from l2d_jax.agents import feature_file
from l2d_jax.agents import store as store_lib
from l2d_jax.data import squad
from l2d_jax.data.example import Example
from l2d_jax.data.tokenizer import load_tokenizer, tokenizer_fingerprint
from l2d_jax.defer import budget as budget_lib
from l2d_jax.errors import UserError
from l2d_jax.export import agent_features, bundle, loader
from l2d_jax.export.loader import Router
from l2d_jax.rejector import agents as agent_source
from l2d_jax.train.inference import padded_batches
from l2d_jax.train.rejector import rejector_inputs

USER_ERRORS = (loader.ExportError,)  # the standalone loader's errors cannot be UserErrors


def add_arguments(parser: argparse.ArgumentParser, command: str = "route") -> None:
  """Adds the options of `l2d-jax route` (the only command this module serves)."""
  del command
  parser.add_argument("--export", required=True, metavar="DIR",
                      help="An export directory (written by export_rejector / l2d-jax export).")
  parser.add_argument("--data", required=True, metavar="FILE",
                      help="SQuAD v1.1 or v2.0 JSON file whose questions are routed.")
  parser.add_argument("--out", default="routes.json", metavar="ROUTES.json",
                      help="Where to write {question id: agent name} (default: routes.json).")
  parser.add_argument("--batch-size", type=int, default=64,
                      help="Questions per call of the router (default: 64).")
  parser.add_argument("--budget", metavar="SPEC",
                      help="Route at an operating point: 'fee=F' (a target mean fee per "
                           "question, the router's own included, in the report's fee units) or "
                           "'share:AGENT<=S' (at most a share S of the questions to AGENT), met "
                           "where --budget-on says.")
  parser.add_argument("--budget-on", choices=("held-out", "batch"), default="held-out",
                      help="Where --budget is met: on the export's held-out calibration "
                           "questions (default: each question's route is its own), or on the "
                           "questions of --data themselves (their mean fee or share is then "
                           "the most spending at most the budget, as close as their number "
                           "allows; a question's route then depends on the others).")
  parser.add_argument("--agent-features", metavar="FILE.npz",
                      help="For a router that reads agents' features: read them from this file "
                           "(question id -> features, as precompute and `l2d-jax agent-features` "
                           "write it) instead of computing them with the exported agents.")


def run(args: argparse.Namespace) -> int:
  """Routes the file; bad input or a broken export raises UserError or loader.ExportError."""
  if args.batch_size < 1:
    raise UserError(f"--batch-size must be positive, got {args.batch_size}")
  if args.budget_on == "batch" and not args.budget:
    raise UserError("--budget-on batch needs a --budget to meet")
  calibration = export_calibration(args.export) if args.budget else None
  # Met held out first in either case: an unreachable budget fails before anything is read.
  point = budget_lib.operating_point(args.budget, calibration) if args.budget else None
  data = squad.read_squad(args.data)
  if args.budget_on == "batch" and not data.examples:
    raise UserError(f"{data.path}: no questions to meet --budget {args.budget} on")
  sources = []
  router, logits_ExJ = route_logits(args.export, data.examples, batch_size=args.batch_size,
                                    agent_features=args.agent_features, sources=sources)
  if point is not None and args.budget_on == "batch":
    calibration = dataclasses.replace(calibration, logits_ExJ=logits_ExJ,
                                      source=f"the {len(logits_ExJ)} questions of {data.path}",
                                      groups_E=[example.title for example in data.examples])
    point = budget_lib.operating_point(args.budget, calibration)
  agent_E = budget_lib.route(logits_ExJ, np.zeros(logits_ExJ.shape[1]) if point is None
                             else point.offset_J)
  routes = {example.id: router.agent_names[j] for example, j in zip(data.examples, agent_E)}
  names, meta = bundle.read_agents(args.export)
  if data.skips.total:
    print(f"{data.path}: {data.skips.summary()}\n(skipped questions are not routed)",
          file=sys.stderr)
  pathlib.Path(args.out).write_text(json.dumps(routes, indent=1) + "\n", encoding="utf-8")
  print("\n".join(sources))
  print(f"routed {len(routes)} questions of {data.path} -> {args.out}")
  print(share_table(list(routes.values()), names, meta))
  if point is not None:
    print(budget_summary(point, calibration, [names.index(name) for name in routes.values()]))
  return 0


def export_calibration(export_dir: str | pathlib.Path) -> budget_lib.Calibration:
  """The export's budget calibration, checked to name the agents its agents.json names.

  Raises loader.ExportError for an export without one, or with another pool's.
  """
  calibration = bundle.read_calibration(export_dir)
  names, _ = bundle.read_agents(export_dir)
  if list(calibration.agent_names) != names:
    raise loader.ExportError(f"{export_dir}: {bundle.CALIBRATION_FILE} names the agents "
                             f"{list(calibration.agent_names)}, {bundle.AGENTS_FILE} {names}")
  return calibration


def budget_summary(point: budget_lib.OperatingPoint, calibration: budget_lib.Calibration,
                   alloc_E: list[int]) -> str:
  """The budget's operating point, its fee or share where it was met, and what these realise."""
  budget, names = point.budget, calibration.agent_names
  alloc_E = np.asarray(alloc_E, np.int64)
  if budget.kind == "fee":
    knob, held, here = (f"lambda {point.knob:.4g}", point.fee,
                        float(calibration.fees_E(alloc_E).mean()))
    unit = "mean fee per question in the report's fee units, the router's own included"
  else:
    k = names.index(budget.agent)
    knob, held, here = (f"delta {point.knob:.4g} on {budget.agent}", float(point.shares_J[k]),
                        float(np.mean(alloc_E == k)))
    unit = f"share of {budget.agent}"
  se = (" (one article or question: no standard error)" if point.standard_error is None
        else f" ± {point.standard_error:.4f}")
  source = calibration.source or f"{point.num_questions} calibration questions"
  return (f"budget {budget.spec} ({unit}): {knob}; met on {source}: {held:.4f}{se}; "
          f"here {here:.4f} on {len(alloc_E)} questions")


def route_logits(export_dir: str | pathlib.Path, examples: list[Example], *,
                 batch_size: int = 64, agent_features: str | pathlib.Path | None = None,
                 sources: list[str] | None = None) -> tuple[Router, np.ndarray]:
  """The loaded router and its logits for `examples`, `float32[E, J]`, from the export alone.

  A router that reads agents' features takes them from the file
  `agent_features` if given, else from the agents exported beside it;
  `sources` (if given) receives one line per feature source saying where its
  inputs came from. Raises loader.ExportError for a damaged export, or one
  whose tokenizer is not the one the router was exported with.
  """
  router = Router(export_dir)
  inputs = {}
  for source in router.meta.get("sources", [{"name": "text"}]):  # older exports: the text only
    if source["name"] not in _SOURCE_INPUTS:
      raise loader.ExportError(f"{export_dir}: the router reads a feature source "
                               f"{source['name']!r} this version cannot feed")
    arrays, said = _SOURCE_INPUTS[source["name"]](export_dir, router, source, examples,
                                                  agent_features, batch_size)
    inputs.update(arrays)
    if sources is not None:
      sources.append(said)
  return router, router_logits(router, inputs, batch_size)


def _text_inputs(export_dir, router: Router, source: dict, examples: list[Example],
                 agent_features, batch_size: int) -> tuple[dict[str, np.ndarray], str]:
  """The question windows, tokenized with the export's tokenizer (checked)."""
  del source, agent_features, batch_size
  tokenizer = load_tokenizer(export_dir)
  if tokenizer_fingerprint(tokenizer) != router.meta.get("tokenizer_fingerprint"):
    raise loader.ExportError(f"the tokenizer in {export_dir} is not the one the router was "
                             "exported with (fingerprints differ)")
  return (rejector_inputs(examples, tokenizer, router.max_seq_len,
                          max_query_len=router.meta["max_query_len"]),
          f"text: the exported tokenizer's windows of {router.max_seq_len} tokens")


def _agent_inputs(export_dir, router: Router, source: dict, examples: list[Example],
                  agent_features_file, batch_size: int) -> tuple[dict[str, np.ndarray], str]:
  """The agents' features, from `agent_features_file` or the agents exported beside the router."""
  names = [agent["name"] for agent in source["agents"]]
  if agent_features_file:
    per_agent = feature_file.read(agent_features_file, names, [e.id for e in examples])
    said = f"agent features of {', '.join(names)}: read from {agent_features_file}"
  else:
    per_agent = {name: agent_features.compute(export_dir, name, examples, batch_size=batch_size)
                 for name in names}
    said = (f"agent features of {', '.join(names)}: computed by the agents exported in "
            f"{pathlib.Path(export_dir) / agent_features.AGENTS_DIR}")
  parts = source["parts"]
  for agent in source["agents"]:
    _, hidden = per_agent[agent["name"]]
    if ("statistics" in parts and agent["statistics"] != list(store_lib.STATISTICS)
        or "hidden" in parts and hidden.shape[1] != agent["hidden_size"]):
      raise UserError(f"agent {agent['name']!r}: the router reads the statistics "
                      f"{agent['statistics']} and a hidden state of {agent['hidden_size']}, got "
                      f"{list(store_lib.STATISTICS)} and {hidden.shape[1]} ({said})")
  return {source["input"]: agent_source.feature_matrix([per_agent[n] for n in names], parts)}, said


_SOURCE_INPUTS = {"text": _text_inputs, "agents": _agent_inputs}  # router.json source -> inputs


def router_logits(router: Router, inputs: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
  """The router's logits for every row of `inputs`, `float32[E, J]`.

  Every call has `batch_size` rows (the last batch is padded with copies of its
  first row), so the router compiles once whatever the number of questions.
  """
  num_rows = len(next(iter(inputs.values())))
  logits = [np.zeros((0, len(router.agent_names)), np.float32)]
  for rows, padded in padded_batches(num_rows, batch_size):
    logits_BxJ, _ = router(**{name: array[padded] for name, array in inputs.items()})
    logits.append(logits_BxJ[:len(rows)])
  return np.concatenate(logits)


def share_table(chosen: list[str], names: list[str], meta: bundle.AgentsMeta) -> str:
  """Per agent: questions routed to it, their share and its fee; then the mean fee per question.

  Fees are in the report's units (the most expensive model agent is 1), the
  units of `--budget fee=F`; the training cost's fee term is beta_scale times them.
  """
  counts = [chosen.count(name) for name in names]
  total = max(len(chosen), 1)
  width = max(len(name) for name in names)
  lines = [f"  {'agent':<{width}}  {'questions':>9}  {'share':>6}  {'fee':>8}"]
  lines += [f"  {name:<{width}}  {count:>9}  {count / total:>6.1%}  {fee:>8.4g}"
            for name, count, fee in zip(names, counts, meta.fees_J)]
  mean_fee = sum(c * fee for c, fee in zip(counts, meta.fees_J)) / total
  lines.append(f"mean fee per question of the agents answering: {mean_fee:.4g} "
               f"(in the cost: beta_scale {meta.beta_scale:g} x fee)")
  # agents whose features the router reads run on every question, also those routed elsewhere
  elsewhere = [(1 - count / total) if name in meta.router_reads else 0.0
               for name, count in zip(names, counts)]
  read_fee = sum(share * fee for share, fee in zip(elsewhere, meta.fees_J))
  if meta.router_reads:
    lines.append(f"read on every question for their features: {', '.join(meta.router_reads)}; "
                 f"{read_fee:.4g} per question on top")
  if meta.router_fee or meta.router_reads:
    lines.append(f"router's own fee per question: {meta.router_fee:.4g}; "
                 f"{mean_fee + read_fee + meta.router_fee:.4g} in all")
  if meta.flops_J is not None and all(f is not None for f in meta.flops_J):
    mean_flops = sum(c * f for c, f in zip(counts, meta.flops_J)) / total
    mean_flops += sum(share * f for share, f in zip(elsewhere, meta.flops_J))
    lines.append(f"mean agent FLOPs per question: {mean_flops:.4g}")
  return "\n".join(lines)
