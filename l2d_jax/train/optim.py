"""The optimizer both trainings use (experts and rejector): AdamW, warmup + decay, clipping.

Gradient accumulation is `optax.MultiSteps`: the jitted step stays one call per
micro-batch and applies the update every `accumulate` calls, so a large
effective batch fits in the memory of a small device.
"""

import dataclasses

import jax
import optax


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  learning_rate: float = 5e-5
  weight_decay: float = 0.01
  warmup_fraction: float = 0.1
  schedule: str = "linear"  # "linear" | "cosine" | "constant" decay after warmup
  clip_norm: float = 1.0
  accumulate: int = 1
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8


def learning_rate_schedule(config: OptimConfig, total_steps: int) -> optax.Schedule:
  """Linear warmup over `warmup_fraction` of the optimizer updates, then the decay."""
  updates = max(total_steps // config.accumulate, 1)
  warmup = int(config.warmup_fraction * updates)
  peak = config.learning_rate
  decay_steps = max(updates - warmup, 1)
  if config.schedule == "linear":
    decay = optax.linear_schedule(peak, 0.0, decay_steps)
  elif config.schedule == "cosine":
    decay = optax.cosine_decay_schedule(peak, decay_steps)
  elif config.schedule == "constant":
    decay = optax.constant_schedule(peak)
  else:
    raise ValueError(f"unknown schedule {config.schedule!r}: linear, cosine or constant")
  if not warmup:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def _decay_mask(params):
  """Weight decay on matrices only: not on biases, LayerNorm scales or other vectors."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(config: OptimConfig, total_steps: int) -> optax.GradientTransformation:
  """AdamW with global-norm clipping and the schedule; `total_steps` counts micro-batches."""
  tx = optax.chain(
      optax.clip_by_global_norm(config.clip_norm) if config.clip_norm else optax.identity(),
      optax.adamw(learning_rate_schedule(config, total_steps), b1=config.b1, b2=config.b2,
                  eps=config.eps, weight_decay=config.weight_decay, mask=_decay_mask))
  if config.accumulate > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=config.accumulate)
  return tx
