"""Consultation fees `beta_j`: what asking agent j costs per question, next to its loss.

The cost of deferring a question to agent j is `alpha_j * loss_j + beta_scale * fee_j`
with the loss in [0, 1], so fees are on the same scale: **the most expensive model
agent of the pool costs 1**, and every other fee is a fraction (or multiple) of it.
A fee comes from one of three sources, named by the agent's `fee` setting:

  "flops"    FLOPs per question (`models.flops.flops_per_question`) divided by the
             largest FLOPs per question among the pool's model agents;
  "latency"  measured seconds per question (`measure_latency`) divided by the
             largest measured latency in the pool;
  a number   given by the user in the same units (1 = the most expensive model
             agent), e.g. "0.5" for an API, "3" for a human annotator.

FLOPs are hardware-independent and exact; latency includes what FLOPs miss
(memory traffic, padding, kernels) but is only meaningful on the machine that
measured it. Agents that are not Flax models (predictions files, humans) have
neither measurement and need a number.
"""

import math
import statistics
import time
from collections.abc import Callable, Mapping

import jax

from l2d_jax.errors import ConfigError

MEASURED = ("flops", "latency")


def fee_from(spec: str | float, flops_per_question: float | None = None,
             latency_s: float | None = None, *, reference_flops: float | None = None,
             reference_latency_s: float | None = None) -> float:
  """One agent's fee, in units of the most expensive model agent (see the module doc).

  Args:
    spec: "flops", "latency", or a non-negative number (a float or its string form).
    flops_per_question: the agent's mean FLOPs per question, for "flops".
    latency_s: the agent's measured seconds per question, for "latency".
    reference_flops: the pool's largest FLOPs per question (its fee is 1).
    reference_latency_s: the pool's largest latency per question (its fee is 1).
  Raises:
    ValueError: an unknown spec, a negative or non-finite number, or a missing
      or non-positive measurement for the source the spec names.
  """
  if spec in MEASURED:
    value, reference = ((flops_per_question, reference_flops) if spec == "flops"
                        else (latency_s, reference_latency_s))
    if value is None:
      raise ValueError(f"fee {spec!r} needs the agent's {spec} per question; an agent that is "
                       "not a model (predictions file, human) needs its fee as a number")
    if reference is None or not reference > 0 or not value >= 0:
      raise ValueError(f"fee {spec!r} needs a non-negative {spec} ({value}) and a positive "
                       f"reference ({reference})")
    return float(value) / float(reference)
  try:
    fee = float(spec)
  except (TypeError, ValueError):
    raise ValueError(f"fee must be one of {MEASURED} or a number, got {spec!r}") from None
  if not (math.isfinite(fee) and fee >= 0):
    raise ValueError(f"a fee given as a number must be finite and non-negative, got {spec!r}")
  return fee


def pool_fees(specs: Mapping[str, str | float], flops_per_question: Mapping[str, float],
              latency_s: Mapping[str, float] | None = None) -> dict[str, float]:
  """Fees of every agent of a pool, by name, each normalised by the pool's most expensive model.

  `flops_per_question` and `latency_s` hold the model agents' measurements (other
  agents are absent from them); the largest value of each is the reference.
  Raises ConfigError (a ValueError) naming the agent whose fee cannot be computed.
  """
  latency_s = latency_s or {}
  reference_flops = max(flops_per_question.values(), default=None)
  reference_latency_s = max(latency_s.values(), default=None)
  fees = {}
  for agent, spec in specs.items():
    try:
      fees[agent] = fee_from(spec, flops_per_question.get(agent), latency_s.get(agent),
                             reference_flops=reference_flops,
                             reference_latency_s=reference_latency_s)
    except ValueError as e:
      raise ConfigError(f"agent {agent!r}: {e}") from e
  return fees


def measure_latency(forward: Callable, batch, repeats: int = 10, *,
                    windows_per_question: float = 1.0) -> float:
  """Median seconds per question of `forward(batch)`, a jitted forward pass over windows.

  One call first compiles and warms up; then `repeats` timed calls, each waiting
  for the result on the device. A call's time is divided by the batch's rows
  (windows) and multiplied by `windows_per_question`.
  """
  if repeats < 1:
    raise ValueError(f"repeats must be at least 1, got {repeats}")
  rows = jax.tree.leaves(batch)[0].shape[0]
  jax.block_until_ready(forward(batch))
  seconds = []
  for _ in range(repeats):
    begin = time.perf_counter()
    jax.block_until_ready(forward(batch))
    seconds.append(time.perf_counter() - begin)
  return statistics.median(seconds) / rows * windows_per_question
