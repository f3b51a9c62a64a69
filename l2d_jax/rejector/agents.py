"""The agent-feature source: what model agents themselves make of the question.

For each feature agent (the main model by default, `rejector.feature_agents`)
the rejector reads the agent's statistics (`store.STATISTICS`: its best-span
probability, top-2 margin, start/end entropies, null margin, number of windows,
and its answer's length in words, `agents.answer_statistics`) and its pooled
final hidden state, as precompute stored them, or
one of the two (`rejector.agent_parts`): the batch key `agent_features` holds
`[statistics, hidden]` of each agent in turn, raw. The source standardises
them with a mean and standard deviation fitted on the rejector's training
questions (held as constants: refitted, never trained), clips them to
+-`Z_CLIP`, and returns the standardised features with a small GELU layer over
them, `[z, gelu(W z + b)]`: a linear head over it is a linear model of the
features plus a one-hidden-layer MLP, and stays useful when the layer is frozen
at its initialization (the frozen-encoder mode).

Running an agent to read its features costs its fee on every question: the
report, the budgets and the export charge it (`baselines.routing_fees`); the
rejector learns on what a route adds to that (`pipeline.route_fees`).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from l2d_jax.agents import store as store_lib
from l2d_jax.errors import ConfigError

NAME = "agents"
INPUT = "agent_features"
PARTS = ("statistics", "hidden")  # what it may read of each agent, in this order
Z_CLIP = 5.0  # so that one outlying question cannot dominate the head


class Statistic(nnx.Variable):
  """A statistic of the training features: not trained, refitted whenever the source is built."""


class AgentFeatureSource(nnx.Module):
  """Raw agent features `[B, F]` -> `[z, gelu(W z + b)]`, `z` standardised and clipped."""

  name = NAME
  learning_rate_group = "head"  # a fresh layer over fixed features

  def __init__(self, agents: Sequence[str], hidden_sizes: Sequence[int], parts: Sequence[str],
               train_features_ExF: np.ndarray, *, hidden: int, seed: int = 0):
    """`hidden_sizes[a]`: agent a's hidden state size; `parts`: what is read of each agent."""
    widths = [len(store_lib.STATISTICS) * ("statistics" in parts)
              + size * ("hidden" in parts) for size in hidden_sizes]
    train_features_ExF = np.asarray(train_features_ExF, np.float64)
    if train_features_ExF.ndim != 2 or train_features_ExF.shape[1] != sum(widths):
      raise ValueError(f"agent features of {list(agents)} have {sum(widths)} columns, got "
                       f"shape {train_features_ExF.shape}")
    if not np.isfinite(train_features_ExF).all():
      raise ValueError(f"agent features of {list(agents)} are not finite on the training rows")
    std_F = train_features_ExF.std(axis=0)
    self.agents = tuple(agents)  # run on every question: the report and the export pay them
    self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
    self.parts = tuple(parts)
    self.widths = tuple(int(w) for w in widths)
    self.mean = Statistic(jnp.asarray(train_features_ExF.mean(axis=0), jnp.float32))
    self.inv_std = Statistic(jnp.asarray(np.where(std_F > 0, 1.0 / np.maximum(std_F, 1e-30), 1.0),
                                         jnp.float32))
    self.dense = nnx.Linear(sum(widths), hidden, rngs=nnx.Rngs(seed))

  @property
  def input_specs(self) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {INPUT: ("float32", (sum(self.widths),))}

  @property
  def dim(self) -> int:
    return sum(self.widths) + self.dense.out_features

  def __call__(self, batch: dict, *, deterministic: bool | None = None) -> jax.Array:
    del deterministic  # no dropout
    z_BxF = jnp.clip((batch[INPUT].astype(jnp.float32) - self.mean[...]) * self.inv_std[...],
                     -Z_CLIP, Z_CLIP)
    return jnp.concatenate([z_BxF, jax.nn.gelu(self.dense(z_BxF))], axis=-1)

  def record(self) -> dict:
    """The agents whose features `agent_features` holds, in order, and each one's columns."""
    statistics = list(store_lib.STATISTICS) if "statistics" in self.parts else []
    return {"input": INPUT, "parts": list(self.parts), "agents": [
        {"name": name, "statistics": statistics, "hidden_size": size * ("hidden" in self.parts)}
        for name, size in zip(self.agents, self.hidden_sizes)]}

  def flops(self) -> float:
    return float(2 * sum(self.widths) * self.dense.out_features)


def feature_agents(config) -> tuple[str, ...]:
  """The agents whose features the rejector reads: `rejector.feature_agents`, else agent 0.

  Each must be a model agent of the pool (only those have features).
  """
  names = config.rejector.feature_agents or (config.agents[0].name,)
  kinds = {agent.name: agent.kind for agent in config.agents}
  for name in names:
    if kinds.get(name) != "model":
      raise ConfigError(f"rejector.feature_agents: {name!r} is not a model agent of the pool "
                       f"(model agents: {[n for n, k in kinds.items() if k == 'model']})")
  if len(set(names)) != len(names):
    raise ConfigError(f"rejector.feature_agents names an agent twice: {list(names)}")
  return tuple(names)


def check(config) -> None:
  """Refuses feature agents that are not model agents of the pool, and unknown parts."""
  feature_agents(config)
  parts = config.rejector.agent_parts
  if not parts or len(set(parts)) != len(parts) or not set(parts) <= set(PARTS):
    raise ConfigError(f"rejector.agent_parts must name distinct parts among {list(PARTS)}, got "
                     f"{list(parts)}")


def feature_matrix(per_agent: Sequence[tuple[np.ndarray, np.ndarray]],
                   parts: Sequence[str] = PARTS) -> np.ndarray:
  """The `parts` of each agent's (statistics, hidden) side by side, float32 `[E, F]`."""
  return np.concatenate([array for pair in per_agent for part, array in zip(PARTS, pair)
                         if part in parts], axis=1).astype(np.float32)


def inputs(context) -> dict[str, np.ndarray]:
  """The stored features of the feature agents for every evaluation question."""
  store = context.pool.store()
  return {INPUT: feature_matrix([store.agent_features(name)
                                 for name in feature_agents(context.config)],
                                context.config.rejector.agent_parts)}


def build(context, train_inputs: dict[str, np.ndarray]) -> AgentFeatureSource:
  """The source, standardised on `train_inputs` (the rejector's training questions)."""
  names = feature_agents(context.config)
  store = context.pool.store()
  hidden_sizes = [store.agent_features(name, slice(0, 1))[1].shape[1] for name in names]
  return AgentFeatureSource(
      names, hidden_sizes, context.config.rejector.agent_parts, train_inputs[INPUT],
      hidden=context.config.rejector.agent_hidden, seed=context.config.train.seed)
