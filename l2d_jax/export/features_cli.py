"""`l2d-jax agent-features`: the agent features a router reads, for a SQuAD file, into a file.

A router that reads model agents' own features (`rejector.agents`) can compute
them itself with the agents exported beside it (`export.agent_features`), or
read them from a file by question id (`agents.feature_file`). This command
writes that file for the questions of any SQuAD file, from the export alone,
so the agents can run once (or elsewhere) and `l2d-jax route --agent-features
FILE` reuse what they said. Precompute writes the same file for the store's
questions (`STORE/AGENT/agent_features.npz`).
"""

import argparse

from l2d_jax.agents import feature_file
from l2d_jax.data import squad
from l2d_jax.errors import UserError
from l2d_jax.export import agent_features, bundle, loader

USER_ERRORS = (loader.ExportError,)


def add_arguments(parser: argparse.ArgumentParser, command: str = "agent-features") -> None:
  """Adds the options of `l2d-jax agent-features`."""
  del command
  parser.add_argument("--export", required=True, metavar="DIR",
                      help="An export directory whose router reads agents' features.")
  parser.add_argument("--data", required=True, metavar="FILE",
                      help="SQuAD v1.1 or v2.0 JSON file of the questions.")
  parser.add_argument("--out", required=True, metavar="FILE.npz",
                      help="Where to write the features (question id -> features).")
  parser.add_argument("--batch-size", type=int, default=64,
                      help="Token windows per call of an agent (default: 64).")


def run(args: argparse.Namespace) -> int:
  """Writes the file; a bad export or data file raises UserError or loader.ExportError."""
  if args.batch_size < 1:
    raise UserError(f"--batch-size must be positive, got {args.batch_size}")
  _, meta = bundle.read_agents(args.export)
  if not meta.router_reads:
    raise UserError(f"the router in {args.export} reads no agent's features")
  data = squad.read_squad(args.data)
  per_agent = {name: agent_features.compute(args.export, name, data.examples,
                                            batch_size=args.batch_size)
               for name in meta.router_reads}
  path = feature_file.write(args.out, [e.id for e in data.examples], per_agent)
  print(f"agent features of {', '.join(per_agent)} for {len(data.examples)} questions of "
        f"{data.path} -> {path}")
  return 0
