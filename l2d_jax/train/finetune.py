"""Fine-tuning a span-extraction expert: start/end cross-entropy, data parallel over the mesh.

Each global batch is a set of feature rows (token windows); every process feeds
its own contiguous slice of the batch, padding rows (index -1) carry weight 0.
Positions outside the attention mask are excluded from the softmax. The loop,
checkpoints and resumption are those of `train.loop`.
"""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from l2d_jax.data.features import Features
from l2d_jax.train import loop as loop_lib
from l2d_jax.train import mesh as mesh_lib
from l2d_jax.train.optim import OptimConfig, make_optimizer
from l2d_jax.train.state import Trainable

MODEL_INPUTS = ("input_ids_FxL", "attention_mask_FxL", "token_type_ids_FxL")


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
  epochs: float = 2.0
  batch_size: int = 32
  optim: OptimConfig = OptimConfig(learning_rate=5e-5)
  seed: int = 0
  checkpoint_every: int = 0
  progress: bool = True


def feature_batch(features: Features, rows_B: np.ndarray) -> dict[str, np.ndarray]:
  """Arrays of the given feature rows (-1: a padding row, weight 0)."""
  safe = np.maximum(rows_B, 0)
  batch = {name: getattr(features, name)[safe] for name in MODEL_INPUTS}
  batch["start_positions_F"] = features.start_positions_F[safe]
  batch["end_positions_F"] = features.end_positions_F[safe]
  batch["weight"] = (rows_B >= 0).astype(np.float32)
  return batch


def span_loss(model: nnx.Module, batch: dict) -> tuple[jax.Array, dict]:
  """Mean over real rows of (CE(start) + CE(end)) / 2, softmax over attended positions."""
  start_BxL, end_BxL = model(batch["input_ids_FxL"], batch["attention_mask_FxL"],
                             batch["token_type_ids_FxL"])
  valid_BxL = batch["attention_mask_FxL"] > 0

  def nll(logits_BxL, gold_B):
    log_p = jax.nn.log_softmax(jnp.where(valid_BxL, logits_BxL, -1e9), axis=-1)
    return -jnp.take_along_axis(log_p, gold_B[:, None], axis=-1)[:, 0]

  loss_B = 0.5 * (nll(start_BxL, batch["start_positions_F"]) +
                  nll(end_BxL, batch["end_positions_F"]))
  weight_B = batch["weight"]
  loss = jnp.sum(loss_B * weight_B) / jnp.maximum(jnp.sum(weight_B), 1.0)
  hit_B = ((jnp.argmax(start_BxL, -1) == batch["start_positions_F"]) &
           (jnp.argmax(end_BxL, -1) == batch["end_positions_F"]))
  span_acc = jnp.sum(hit_B * weight_B) / jnp.maximum(jnp.sum(weight_B), 1.0)
  return loss, {"span_acc": span_acc}


def finetune(model: nnx.Module, features: Features, settings: FinetuneSettings, *,
             workdir: str | pathlib.Path, mesh=None) -> Trainable:
  """Fine-tunes `model` (a SpanModel) on `features`; resumes from `workdir` if it holds checkpoints.

  A checkpoint of another recipe (batch size, optimizer, seed) is refused
  rather than resumed; `epochs` may differ, to lengthen a run.

  Returns the `Trainable`; `trainable.model()` is the fine-tuned module.
  """
  mesh = mesh or mesh_lib.make_mesh()
  total_steps = max(int(round(settings.epochs * loop_lib.steps_per_epoch(
      features.num_features, settings.batch_size))), 1)
  tx = make_optimizer(settings.optim, total_steps)
  trainable = Trainable(model, tx, mesh, settings.seed)
  rows = loop_lib.epoch_batches(features.num_features, settings.batch_size, settings.seed)
  loop_lib.train(
      trainable, trainable.make_step(span_loss), workdir=workdir,
      config=loop_lib.LoopConfig(total_steps=total_steps,
                                 checkpoint_every=settings.checkpoint_every,
                                 progress=settings.progress, desc="finetune"),
      local_batch_fn=lambda step: feature_batch(features, mesh_lib.local_rows(rows(step), mesh)),
      meta={"recipe": {"batch_size": settings.batch_size,
                       "optim": dataclasses.asdict(settings.optim), "seed": settings.seed}})
  return trainable
