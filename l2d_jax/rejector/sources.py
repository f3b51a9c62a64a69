"""The feature sources a rejector can read, by the name `RejectorConfig.inputs` gives them.

A source kind is a module with `NAME`, `check(config)` (refuses a config it
cannot serve, before anything runs), `inputs(context)` (its batch arrays for
every evaluation question, in the pool's order) and `build(context,
train_inputs)` (its `nnx.Module`, which may fit statistics on the training
rows' inputs). The functions here only loop over the configured names, so a
new source is a new module added to `KINDS`.
"""

import dataclasses
import numpy as np

from l2d_jax.errors import ConfigError
from l2d_jax.rejector import agents, text
from l2d_jax.rejector.model import Rejector

KINDS = {kind.NAME: kind for kind in (text, agents)}


@dataclasses.dataclass(frozen=True)
class SourceContext:
  """What a source may draw on: the experiment's config, its agent pool and the tokenizer."""
  config: object     # config.ExperimentConfig
  pool: object       # agents.pool.Pool
  tokenizer: object  # the rejector's tokenizer (the text source's)


def check(config) -> None:
  """Refuses unknown or repeated source names, or a source's bad settings, before anything runs."""
  names = config.rejector.inputs
  if not names or len(set(names)) != len(names) or any(n not in KINDS for n in names):
    raise ConfigError(f"rejector.inputs must name distinct feature sources among {sorted(KINDS)}, "
                     f"got {list(names)}")
  for name in names:
    KINDS[name].check(config)


def rejector_inputs(context: SourceContext) -> dict[str, np.ndarray]:
  """Every configured source's batch arrays for every evaluation question."""
  check(context.config)
  arrays = {}
  for name in context.config.rejector.inputs:
    arrays.update(KINDS[name].inputs(context))
  return arrays


def build_rejector(context: SourceContext, train_inputs: dict[str, np.ndarray]) -> Rejector:
  """The configured sources (fitted on `train_inputs`) under one head over the pool's agents."""
  check(context.config)
  return Rejector([KINDS[name].build(context, train_inputs)
                   for name in context.config.rejector.inputs],
                  len(context.pool.names), seed=context.config.train.seed)
