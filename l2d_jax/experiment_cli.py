"""`l2d-jax run | demo | prepare | precompute | train | evaluate | export | sweep`.

All of them take an experiment (`--config NAME_OR_FILE`, a `get_config()` file
or `experiments/NAME.py`) with `--set key=value` overrides and `--workdir`.
`run` does every stage; the stage commands stop after theirs (each rerun skips
what is already on disk). `demo` is `run` on `experiments/demo.py`. `sweep`
trains many rejector heads at once on a frozen encoder over a grid.
"""

import argparse
import dataclasses
import json

STAGE_OF_COMMAND = {"prepare": "data", "precompute": "agents", "train": "rejector",
                    "evaluate": "report", "export": "export", "run": "export", "demo": "export"}


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
  default_config = "demo" if command == "demo" else None
  parser.add_argument("--config", default=default_config, required=default_config is None,
                      help="experiment: a file defining get_config(), or a name in experiments/")
  parser.add_argument("--workdir", help="where everything is written (default: the config's)")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config field, e.g. --set train.steps=200 (repeatable)")
  parser.add_argument("--distributed", action="store_true",
                      help="multi-host: call jax.distributed.initialize() first (run the same "
                           "command on every host; TPU slices and SLURM are detected, else set "
                           "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)")
  if command == "sweep":
    parser.add_argument("--grid", action="append", default=[], metavar="AXIS=V1,V2,...",
                        help="a sweep axis: beta_scale, alpha, learning_rate, u or seed "
                             "(repeatable; the grid is their product)")
    parser.add_argument("--steps", type=int, default=300, help="head training steps")
    parser.add_argument("--out", help="results directory (default: WORKDIR/sweep)")


def load(args) -> "object":
  from l2d_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  config = config_lib.load_config(args.config)
  for assignment in args.set:
    config = config_lib.override(config, assignment)
  if args.workdir:
    config = dataclasses.replace(config, workdir=args.workdir)
  return config


def _quiet_logs(verbose: bool) -> None:
  """absl (Orbax logs through it) at the level `l2d_jax.cli` set for `logging`."""
  try:
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
  except ImportError:
    pass


def run(args) -> int:
  _quiet_logs(args.verbose)
  if args.distributed:
    import jax  # pylint: disable=import-outside-toplevel
    jax.distributed.initialize()
  config = load(args)
  if args.command == "sweep":
    from l2d_jax import sweep_stage  # pylint: disable=import-outside-toplevel
    out = sweep_stage.run_sweep(config, args.grid, steps=args.steps, out_dir=args.out)
    print(f"results: {out / 'results.csv'} and {out / 'results.md'}")
    return 0
  from l2d_jax import pipeline  # pylint: disable=import-outside-toplevel
  outputs = pipeline.run(config, until=STAGE_OF_COMMAND[args.command])
  print(json.dumps(outputs, indent=1))
  return 0
