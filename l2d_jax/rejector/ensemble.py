"""Rejectors trained from different seeds, routing by the mean of their logits.

A small rejector (a dozen agent statistics under one layer) lands on a
somewhat different head from one seed to the next, and with it the ranking of
questions that a budget's fee offsets cut and where its front crosses the
cascade's; the mean of several seeds' logits moves less
(experiments/README.md measures both). `train.ensemble` trains that many
members and routes by their mean.

To everything downstream the ensemble is one rejector: its features are the
members' features side by side, `[B, N * D]`, and its classifier one linear
head on them whose kernel is the members' kernels stacked and divided by N and
whose bias is the mean of their biases, so that head gives the mean of the
members' logits. Budgets, fee offsets, FLOPs and the StableHLO export read
it as they read a single rejector; the beta curve trains one new head per
scale on all members' features side by side.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from l2d_jax.rejector.model import Rejector, host_head


class Ensemble(nnx.Module):
  """Trained `members` -> their features side by side -> the mean of their logits, `[B, J]`."""

  def __init__(self, members: Sequence[Rejector]):
    members = list(members)
    if len(members) < 2:
      raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
    first = members[0]
    for i, member in enumerate(members[1:], 1):
      if (member.input_specs != first.input_specs or member.records() != first.records()
          or member.num_labels != first.num_labels):
        raise ValueError(f"ensemble member {i} reads {member.records()} into "
                         f"{member.num_labels} agents, member 0 {first.records()} into "
                         f"{first.num_labels}: members must read and score alike")
    self.members = nnx.List(members)
    self.num_labels = first.num_labels
    kernels, biases = zip(*(host_head(member.classifier) for member in members))
    self.classifier = nnx.Linear(self.dim, self.num_labels, rngs=nnx.Rngs(0))
    self.classifier.kernel[...] = jnp.asarray(np.concatenate(kernels) / len(members))
    self.classifier.bias[...] = jnp.asarray(np.mean(biases, axis=0))

  @property
  def source_names(self) -> tuple[str, ...]:
    return self.members[0].source_names

  @property
  def paid_agents(self) -> tuple[str, ...]:
    return self.members[0].paid_agents

  @property
  def dim(self) -> int:
    """Width of the members' features side by side."""
    return sum(member.dim for member in self.members)

  @property
  def input_specs(self) -> dict[str, tuple[str, tuple[int, ...]]]:
    return self.members[0].input_specs

  def features(self, batch: dict, *, deterministic: bool | None = None) -> jax.Array:
    """Every member's features, member after member, `[B, dim]` float32 (the head's input)."""
    return jnp.concatenate([member.features(batch, deterministic=deterministic)
                            for member in self.members], axis=-1)

  def __call__(self, batch: dict, *, deterministic: bool | None = None) -> jax.Array:
    """The mean of the members' logits, `[B, J]` float32."""
    return self.classifier(self.features(batch, deterministic=deterministic))

  def records(self) -> list[dict]:
    """The members' sources (alike in every member): what the export says about its inputs."""
    return self.members[0].records()

  def flops(self) -> float:
    """FLOPs of routing one question: every member's (the mean head's products are theirs)."""
    return float(sum(member.flops() for member in self.members))


AnyRejector = Rejector | Ensemble  # what training's stage hands the report and the export
