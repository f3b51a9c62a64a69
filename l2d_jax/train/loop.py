"""The training loop both trainings share: resume, step, log, evaluate, checkpoint, stop.

Batches are a pure function of the step (`batch_fn(step)` draws from a
seeded per-epoch permutation), dropout is reseeded from the step, and the
state (parameters, optimizer, step) is checkpointed with Orbax, so a run
killed at any point and restarted from its latest checkpoint ends with
exactly the parameters of an uninterrupted run. A non-finite loss stops the
run with a clear message; the step that produced it changed nothing and no
later checkpoint is written, so the last good checkpoint stays the latest.
Each checkpoint records the settings it was trained under (`meta`), and a
run resumes only under the same ones: a rerun after a config change would
otherwise go on silently from another run's parameters.
"""

import dataclasses
import json
import logging
import pathlib
from collections.abc import Callable

import jax
import numpy as np

from l2d_jax.errors import ConfigError
from l2d_jax.train import checkpoint as ckpt_lib
from l2d_jax.train import mesh as mesh_lib
from l2d_jax.train.log import MetricsLogger
from l2d_jax.train.state import Trainable


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss or gradient."""


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  total_steps: int
  eval_every: int = 0          # 0: only at the end
  checkpoint_every: int = 0    # 0: only at the end
  keep_checkpoints: int = 3
  best_metric: str | None = None  # an eval metric; keeps the best checkpoint too
  best_mode: str = "min"
  progress: bool = True
  desc: str = "train"


def epoch_batches(num_rows: int, batch_size: int, seed: int) -> Callable[[int], np.ndarray]:
  """`rows(step)`: the row indices of global batch `step`, reshuffled every epoch.

  Pure in `step`, so a resumed run sees the same batches. The last partial
  batch of an epoch is filled with rows marked -1 (padding, weight 0).
  """
  per_epoch = -(-num_rows // batch_size)

  def rows(step: int) -> np.ndarray:
    epoch, index = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_rows)
    batch = order[index * batch_size:(index + 1) * batch_size]
    return np.concatenate([batch, np.full(batch_size - len(batch), -1, batch.dtype)])

  return rows


def steps_per_epoch(num_rows: int, batch_size: int) -> int:
  return -(-num_rows // batch_size)


def train(trainable: Trainable, step_fn, *, workdir: str | pathlib.Path,
          config: LoopConfig, local_batch_fn: Callable[[int], dict],
          eval_fn: Callable[[Trainable], dict] | None = None,
          meta: dict | None = None) -> dict:
  """Runs `step_fn` from the latest checkpoint in `workdir` up to `config.total_steps`.

  `local_batch_fn(step)` returns this process's rows of global batch `step` as
  numpy arrays (with a `weight` entry: 0 for padding rows). `meta` (JSON) is
  saved with every checkpoint: the settings that make this run this run; a
  checkpoint whose saved entries differ from it is refused, naming each.
  Returns the last evaluation's metrics. `trainable.state` holds the final state.
  """
  workdir = pathlib.Path(workdir)
  checkpointer = ckpt_lib.Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints,
                                       best_metric=config.best_metric, best_mode=config.best_mode)
  start = 0
  latest = checkpointer.latest_step()
  if latest is not None:
    trainable.state, saved_meta = checkpointer.restore(
        latest, ckpt_lib.abstract_like(trainable.state))
    _check_same_settings(checkpointer.directory / str(latest), saved_meta, meta or {})
    start = int(saved_meta["step"])
    logging.info("resumed from %s at step %d", checkpointer.directory / str(latest), start)
  logger = MetricsLogger(workdir, total_steps=config.total_steps, initial_step=start,
                         desc=config.desc, progress=config.progress)
  last_eval: dict = {}
  try:
    pending_check = None
    for step in range(start, config.total_steps):
      batch = local_batch_fn(step)
      examples = int(np.sum(batch["weight"] > 0)) * jax.process_count()
      trainable.state, metrics = step_fn(trainable.state, mesh_lib.shard_batch(trainable.mesh, batch))
      if pending_check is not None:
        _check_finite(*pending_check)
      pending_check = (step, metrics)
      logger.step(step + 1, metrics, examples)
      done = step + 1
      is_last = done == config.total_steps
      evaluated = False
      if (config.eval_every and done % config.eval_every == 0) or is_last:
        _check_finite(step, metrics)
        if eval_fn is not None:
          last_eval, evaluated = logger.write(done, "eval", eval_fn(trainable)), True
      if (config.checkpoint_every and done % config.checkpoint_every == 0) or is_last:
        _check_finite(step, metrics)
        checkpointer.save(done, trainable.state,
                          {"step": done, "total_steps": config.total_steps, **(meta or {})},
                          metrics=last_eval if evaluated and config.best_metric else None,
                          force=True)
    if pending_check is not None:
      _check_finite(*pending_check)
    if start >= config.total_steps and eval_fn is not None:  # resumed a finished run
      last_eval = logger.write(start, "eval", eval_fn(trainable))
  finally:
    logger.close()
    checkpointer.close()
  return last_eval


def _check_same_settings(directory: pathlib.Path, saved_meta: dict, meta: dict) -> None:
  """Refuses a checkpoint saved under settings other than `meta` (entries both have)."""
  saved, wanted = _flat(saved_meta), _flat(json.loads(json.dumps(meta)))
  changed = [f"{key} {saved[key]!r} there, {wanted[key]!r} now"
             for key in sorted(saved.keys() & wanted.keys()) if saved[key] != wanted[key]]
  if changed:
    raise ConfigError(f"{directory} was trained under other settings ({'; '.join(changed)}); "
                      "resuming it would continue another run: use another workdir, or "
                      "delete that checkpoint directory to train afresh")


def _flat(tree: dict, prefix: str = "") -> dict:
  """{"a.b": leaf} of nested dicts."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def _check_finite(step: int, metrics: dict) -> None:
  if float(metrics["finite"]) < 1.0:
    raise NonFiniteLossError(
        f"non-finite loss or gradient at step {step + 1} (loss {float(metrics['loss'])}, "
        f"grad norm {float(metrics['grad_norm'])}); stopping. Parameters were not updated by "
        "that step and the last good checkpoint is kept: lower the learning rate or check "
        "the costs, then resume.")
