"""The rejector: named feature sources, concatenated, and one linear head over the agents.

Each source maps a batch (a dict of named arrays) to a float32 vector per
question, `[B, D_s]`: the question text (`text.TextSource`: an encoder's pooled
[CLS] state), the agents' own features (`agents.AgentFeatureSource`), or any
other module with the same few members:

  name          the source's name in `RejectorConfig.inputs`
  agents        the agents it runs on every question (paid on every question)
  learning_rate_group
                "encoder" (a pretrained encoder, fine-tuned gently) or "head"
                (layers that start fresh): `train.head_learning_rate` sets the
                second group's learning rate apart, the head's included
  input_specs   {batch key: (dtype name, shape without the batch axis)}
  dim           D_s
  __call__(batch, deterministic=None) -> [B, D_s] float32
  flops()       FLOPs of one question
  record()      what a router's user must know to feed it (JSON, in router.json)

`Rejector.features` is the concatenation `[B, sum D_s]` (what the frozen-encoder
heads and the accuracy-cost curve are trained on) and `Rejector.__call__` the
head's logits `[B, J]` on it. Training, the frozen-feature sweeps and the
export see only this, so a new source is a new module, not a new branch.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def host_head(classifier: nnx.Linear) -> tuple[np.ndarray, np.ndarray]:
  """A head's kernel `[D, J]` and bias `[J]`, fp32 on the host.

  The head's parameters are replicated, so this process's first copy holds all
  of them: nothing is gathered across processes.
  """
  return tuple(np.asarray(variable[...].addressable_data(0), np.float32)
               for variable in (classifier.kernel, classifier.bias))


class Rejector(nnx.Module):
  """Feature sources -> concatenated features -> `logits_BxJ` over `num_agents` agents."""

  def __init__(self, sources: Sequence[nnx.Module], num_agents: int, *, seed: int = 0):
    names = [source.name for source in sources]
    if not names or len(set(names)) != len(names):
      raise ValueError(f"a rejector needs distinct feature sources, got {names}")
    keys = [key for source in sources for key in source.input_specs]
    if len(set(keys)) != len(keys):
      raise ValueError(f"feature sources {names} read overlapping batch keys {keys}")
    self.sources = nnx.List(list(sources))
    self.num_labels = num_agents
    self.classifier = nnx.Linear(self.dim, num_agents,
                                 kernel_init=nnx.initializers.normal(0.02), rngs=nnx.Rngs(seed))

  @property
  def source_names(self) -> tuple[str, ...]:
    return tuple(source.name for source in self.sources)

  @property
  def paid_agents(self) -> tuple[str, ...]:
    """The agents the sources run on every question, whatever the routing."""
    return tuple(dict.fromkeys(agent for source in self.sources for agent in source.agents))

  @property
  def dim(self) -> int:
    """Width of the concatenated features."""
    return sum(source.dim for source in self.sources)

  @property
  def input_specs(self) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every batch key the sources read: (dtype name, shape without the batch axis)."""
    return {key: spec for source in self.sources for key, spec in source.input_specs.items()}

  def learning_rate_groups(self, params: nnx.State) -> nnx.State:
    """`params` with each leaf replaced by its group: its source's, "head" for the head."""
    def group(path, _):
      if path[0].key == "sources":
        return self.sources[path[1].key].learning_rate_group
      return "head"
    return jax.tree_util.tree_map_with_path(group, params)

  def features(self, batch: dict, *, deterministic: bool | None = None) -> jax.Array:
    """The sources' vectors side by side, `[B, dim]` float32 (the head's input)."""
    return jnp.concatenate([source(batch, deterministic=deterministic).astype(jnp.float32)
                            for source in self.sources], axis=-1)

  def __call__(self, batch: dict, *, deterministic: bool | None = None) -> jax.Array:
    """One logit per agent for each question of the batch, `[B, J]` float32."""
    return self.classifier(self.features(batch, deterministic=deterministic))

  def records(self) -> list[dict]:
    """Each source's `record()`, in order: what the export says about its inputs."""
    return [{"name": source.name, **source.record()} for source in self.sources]

  def flops(self) -> float:
    """FLOPs of routing one question: every source and the head (matrix products only)."""
    return float(sum(source.flops() for source in self.sources)
                 + 2 * self.dim * self.num_labels)
