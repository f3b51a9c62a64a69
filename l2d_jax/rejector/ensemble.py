"""Rejectors trained from different seeds, routing by the mean of their logits.

A small rejector over a dozen agent statistics lands on a somewhat different
head from one seed to the next, and with it the ranking of questions that a
budget's fee offset cuts: over five seeds the v1.1 statistics rejector's
fee=1.0 budget missed on test by 3.0 to 7.4%, and the five seeds' mean logits
by 4.1%. `train.ensemble` trains that many members and routes by their mean.

To everything downstream the ensemble is one rejector: its features are the
members' features side by side, `[B, N * D]`, and its classifier one linear
head on them whose kernel is the members' kernels stacked and divided by N and
whose bias is the mean of their biases, so that head gives the mean of the
members' logits. The beta curve's heads, budgets, FLOPs and the StableHLO
export read it as they read a single rejector.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from l2d_jax.rejector.model import Rejector
from l2d_jax.train import mesh as mesh_lib


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
    local = lambda variable: mesh_lib.local_value(variable[...]).astype(np.float32)
    self.classifier = nnx.Linear(self.dim, self.num_labels, rngs=nnx.Rngs(0))
    self.classifier.kernel[...] = jnp.asarray(
        np.concatenate([local(m.classifier.kernel) for m in members]) / len(members))
    self.classifier.bias[...] = jnp.asarray(
        np.mean([local(m.classifier.bias) for m in members], axis=0))

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
