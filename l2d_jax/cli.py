"""The `l2d-jax` command line.

Each subcommand lives in the module that does its job; that module exposes
`add_arguments(parser, command)` and `run(args) -> int` (`args.command` names the
subcommand, so one module can serve several). Modules are imported only when
their subcommand runs, so `l2d-jax --help` stays fast and never imports JAX.
"""

import argparse
import importlib
import sys

# name -> (module, one-line help)
_EXPERIMENT = "l2d_jax.experiment_cli"
_COMMANDS = {
    "demo": (_EXPERIMENT, "The end-to-end demo on synthetic data (downloads nothing)."),
    "run": (_EXPERIMENT, "Run an experiment end to end (every stage; reruns resume)."),
    "prepare": (_EXPERIMENT, "Load and split an experiment's data."),
    "precompute": (_EXPERIMENT, "Fine-tune the experts and precompute every agent's outputs."),
    "train": (_EXPERIMENT, "Train the rejector (after precompute)."),
    "evaluate": (_EXPERIMENT, "Evaluate against baselines: report.json/.md, tradeoff.png."),
    "export": (_EXPERIMENT, "Export the trained rejector (HF safetensors, StableHLO router)."),
    "sweep": (_EXPERIMENT, "Train many rejector heads at once (frozen encoder, vmapped grid)."),
    "score": ("l2d_jax.metrics.score_cli",
              "Score SQuAD predictions (official v1.1/v2.0 semantics) or human performance."),
    "route": ("l2d_jax.export.route",
              "Assign each question of a SQuAD file to an agent, using only an export directory."),
}


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  parser = build_parser_for(argv)
  args = parser.parse_args(argv)
  return importlib.import_module(args._module).run(args) or 0


def build_parser_for(argv: list[str]) -> argparse.ArgumentParser:
  """The parser, with options loaded for the subcommand named in `argv`."""
  parser = argparse.ArgumentParser(
      prog="l2d-jax",
      description="Learning-to-Defer for extractive QA: learn which agent answers each query.")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
  chosen = next((a for a in argv if not a.startswith("-")), None)
  for name, (module, help_text) in _COMMANDS.items():
    sub_parser = sub.add_parser(name, help=help_text, description=help_text)
    sub_parser.set_defaults(_module=module)
    if name == chosen:
      importlib.import_module(module).add_arguments(sub_parser, name)
  return parser
