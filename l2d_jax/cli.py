"""The `l2d-jax` command line.

Each subcommand lives in the module that does its job; that module exposes
`add_arguments(parser, command)` and `run(args) -> int` (`args.command` names the
subcommand, so one module can serve several). Modules are imported only when
their subcommand runs, so `l2d-jax --help` stays fast and never imports JAX.

Errors the user can fix (`errors.UserError`, OSError such as a missing file, and
the types a module lists in its `USER_ERRORS`) end the command with one line,
`l2d-jax COMMAND: error: ...`, on stderr and exit status 2; `--verbose` (every
subcommand has it) prints their traceback too. Any other exception is a bug and
keeps its traceback. Third-party libraries' banners and advice are kept off
stderr unless `--verbose` (`quiet_libraries`).
"""

import argparse
import importlib
import logging
import os
import sys
import traceback

from l2d_jax.errors import UserError

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
    "agent-features": ("l2d_jax.export.features_cli",
                       "Write the agent features an exported router reads, for a SQuAD file."),
}
ERROR_STATUS = 2


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  quiet_libraries(verbose="--verbose" in argv)
  parser = build_parser_for(argv)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                      format="%(levelname)s %(name)s: %(message)s")
  module = importlib.import_module(args._module)
  try:
    return module.run(args) or 0
  except (UserError, OSError, *getattr(module, "USER_ERRORS", ())) as err:
    if args.verbose:
      traceback.print_exc()
    print(f"l2d-jax {args.command}: error: {one_line(err)}", file=sys.stderr)
    return ERROR_STATUS


def one_line(err: BaseException) -> str:
  """The error's message on one line (a multi-line message has its lines joined by '; ').

  An OSError from the system reads `FILE: reason` rather than `[Errno N] reason: 'FILE'`.
  """
  if isinstance(err, OSError) and err.filename is not None and err.strerror:
    return f"{err.filename}: {err.strerror}"
  lines = [line.strip() for line in str(err).splitlines() if line.strip()]
  return "; ".join(lines) or type(err).__name__


def quiet_libraries(verbose: bool) -> None:
  """Keeps third-party start-up banners and advice off stderr, unless `verbose`.

  Set before any of them is imported: transformers' "PyTorch was not found"
  advice (every `route` without torch) and its other warnings below errors,
  TensorFlow's and gRPC's C++ logs. Errors still show; our own warnings (skipped
  records, unusable cache entries) go through `logging` and show too.
  """
  if verbose:
    return
  for name, value in (("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
                      ("TRANSFORMERS_VERBOSITY", "error"),
                      ("TF_CPP_MIN_LOG_LEVEL", "2"),
                      ("GRPC_VERBOSITY", "ERROR")):
    os.environ.setdefault(name, value)


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
    sub_parser.add_argument("--verbose", action="store_true",
                            help="log at INFO level, let libraries warn, and print the "
                                 "traceback of an error")
    if name == chosen:
      importlib.import_module(module).add_arguments(sub_parser, name)
  return parser
