"""Training and applying the rejector: feature sources with a (J+1)-way head over the agent pool.

The rejector (`l2d_jax.rejector.model.Rejector`) reads each question through
its feature sources (the question with the start of its context, in one window
of its own tokenizer; the agents' own features) and scores the agents. Its
batches carry, beside the sources' inputs, the matching rows of the agent
store (per-agent EM, F1 and span NLL); the costs `alpha * loss + beta` are
formed on the device inside the jitted step, so changing alpha, beta or the
loss type never touches the stored agent outputs.
"""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from l2d_jax.data.example import Example
from l2d_jax.data.features import FeatureParams, make_features
from l2d_jax.defer import costs as costs_lib
from l2d_jax.defer import policy
from l2d_jax.defer import surrogate
from l2d_jax.train import inference
from l2d_jax.train import loop as loop_lib
from l2d_jax.train import mesh as mesh_lib
from l2d_jax.train.optim import OptimConfig, make_optimizer
from l2d_jax.train.state import Trainable

INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the text source's batch keys
STORE_FIELDS = ("em", "f1", "span_nll")


@dataclasses.dataclass(frozen=True)
class RejectorData:
  """Questions as rejector inputs (each source's arrays, `[E, ...]`) with their agents' scores."""
  inputs: dict[str, np.ndarray]
  scores: dict[str, np.ndarray]  # em, f1 (in [0, 1]) and span_nll, each [E, J]
  example_ids: list[str]

  @property
  def num_examples(self) -> int:
    return len(self.example_ids)

  def rows(self, index_B: np.ndarray) -> dict[str, np.ndarray]:
    """A batch of the given rows (-1: padding, weight 0)."""
    safe = np.maximum(index_B, 0)
    batch = {k: v[safe] for k, v in self.inputs.items()}
    batch.update({k: v[safe] for k, v in self.scores.items()})
    batch["weight"] = (index_B >= 0).astype(np.float32)
    return batch

  def select(self, index_E: np.ndarray) -> "RejectorData":
    return RejectorData({k: v[index_E] for k, v in self.inputs.items()},
                        {k: v[index_E] for k, v in self.scores.items()},
                        [self.example_ids[i] for i in index_E])


def rejector_inputs(examples: list[Example], tokenizer, max_seq_len: int,
                    max_query_len: int = 64) -> dict[str, np.ndarray]:
  """The first window (question, then the start of the context) of each question."""
  params = FeatureParams(max_seq_len=max_seq_len, doc_stride=min(128, max_seq_len // 4),
                         max_query_len=min(max_query_len, max_seq_len // 4))
  features = make_features(examples, tokenizer, params)
  _, first_F = np.unique(features.example_index_F, return_index=True)
  return {"input_ids": features.input_ids_FxL[first_F],
          "attention_mask": features.attention_mask_FxL[first_F],
          "token_type_ids": features.token_type_ids_FxL[first_F]}


@dataclasses.dataclass(frozen=True)
class CostSpec:
  """c_j = alpha_j * loss_j + beta_j, with loss one of costs.LossType."""
  loss: str
  alpha_J: tuple[float, ...]
  beta_J: tuple[float, ...]

  def costs(self, scores: dict) -> jax.Array:
    """`[B, J]` costs of a batch (or table) of per-agent scores."""
    loss_BxJ = costs_lib.select_loss(self.loss, em_ExJ=scores["em"], f1_ExJ=scores["f1"],
                                     span_nll_ExJ=scores["span_nll"])
    return costs_lib.agent_costs(loss_BxJ, jnp.asarray(self.alpha_J), jnp.asarray(self.beta_J))


def rejector_loss(spec: CostSpec, u: float):
  """loss_fn(model, batch) for `Trainable.make_step`: the comp-sum surrogate on the batch's costs."""

  def loss_fn(model, batch):
    logits_BxJ = model(batch)
    costs_BxJ = spec.costs(batch)
    weight_B = batch["weight"]
    loss = surrogate.mean_comp_sum_loss(logits_BxJ, costs_BxJ, u, weight_B)
    true_B = policy.true_deferral_loss(logits_BxJ, costs_BxJ)
    deferral = jnp.sum(true_B * weight_B) / jnp.maximum(jnp.sum(weight_B), 1.0)
    return loss, {"deferral_loss": deferral}

  return loss_fn


def predict_logits(model: nnx.Module, inputs: dict[str, np.ndarray], *, mesh=None,
                   batch_size: int = 64, desc: str | None = None) -> np.ndarray:
  """Rejector logits `[E, J]` for every row of `inputs`, batched over the mesh (`desc`: a bar)."""
  return inference.apply_in_batches(model, _logits, inputs, mesh=mesh, batch_size=batch_size,
                                    desc=desc)


def _logits(model: nnx.Module, batch: dict) -> jax.Array:
  """The rejector's logits on one batch (module level: compiled once per model shape)."""
  return model(batch)


def allocation_metrics(logits_ExJ: np.ndarray, data: RejectorData, spec: CostSpec) -> dict:
  """What routing by `logits_ExJ` achieves: deferral loss, EM/F1, fee, shares, oracle loss.

  `beta_fee` is the mean `beta_j` of the chosen agents, the fee part of the
  deferral loss (beta-scaled, no router fee), not the report's unscaled `fee`.
  """
  costs_ExJ = np.asarray(spec.costs(data.scores))
  alloc_E = np.asarray(policy.allocate(jnp.asarray(logits_ExJ)))
  rows = np.arange(len(alloc_E))
  num_agents = costs_ExJ.shape[1]
  metrics = {
      "deferral_loss": float(costs_ExJ[rows, alloc_E].mean()),
      "oracle_loss": float(costs_ExJ.min(axis=1).mean()),
      "em": float(data.scores["em"][rows, alloc_E].mean()),
      "f1": float(data.scores["f1"][rows, alloc_E].mean()),
      "beta_fee": float(np.asarray(spec.beta_J)[alloc_E].mean()),
  }
  shares = np.bincount(alloc_E, minlength=num_agents) / len(alloc_E)
  metrics.update({f"share_{j}": float(s) for j, s in enumerate(shares)})
  return metrics


@dataclasses.dataclass(frozen=True)
class RejectorSettings:
  steps: int = 1000
  batch_size: int = 32
  optim: OptimConfig = OptimConfig(learning_rate=1e-4)
  head_learning_rate: float = 0.0  # `Rejector.learning_rate_groups`' "head"; 0: optim's
  u: float = 1.0
  seed: int = 0
  eval_every: int = 200
  checkpoint_every: int = 200
  keep_checkpoints: int = 3
  progress: bool = True
  desc: str = "rejector"  # the progress bar's name


def rejector_optimizer(model: nnx.Module, settings: RejectorSettings
                       ) -> optax.GradientTransformation:
  """The optimizer; with `head_learning_rate`, one per learning-rate group of the rejector.

  A pretrained text encoder fine-tunes at a few 1e-5, where fresh layers over
  the agents' features and the head barely move in a few hundred steps: with
  `head_learning_rate` set, those train at it (each group its own AdamW,
  schedule and clipping) and the encoder at `optim.learning_rate`.
  """
  if not settings.head_learning_rate:
    return make_optimizer(settings.optim, settings.steps)
  head = dataclasses.replace(settings.optim, learning_rate=settings.head_learning_rate)
  return optax.multi_transform({"encoder": make_optimizer(settings.optim, settings.steps),
                                "head": make_optimizer(head, settings.steps)},
                               model.learning_rate_groups)


def train_rejector(model: nnx.Module, train: RejectorData, spec: CostSpec,
                   settings: RejectorSettings, *, workdir: str | pathlib.Path,
                   validation: RejectorData | None = None, mesh=None,
                   meta: dict | None = None) -> tuple[Trainable, dict]:
  """Trains `model` on `train`; evaluates on `validation` every `eval_every` steps.

  Resumes from the latest checkpoint in `workdir/checkpoints`, only if it was
  trained under the same costs, settings and `meta` (what else describes the
  run: inputs, agents); `steps` may differ, to lengthen a run. Keeps the best
  by validation deferral loss. Returns the trainable and the last evaluation.
  """
  mesh = mesh or mesh_lib.make_mesh()
  trainable = Trainable(model, rejector_optimizer(model, settings), mesh, settings.seed)
  rows = loop_lib.epoch_batches(train.num_examples, settings.batch_size, settings.seed)

  def eval_fn(trainable):
    data = validation or train
    return allocation_metrics(predict_logits(trainable.model(), data.inputs, mesh=mesh),
                              data, spec)

  last = loop_lib.train(
      trainable, trainable.make_step(rejector_loss(spec, settings.u)), workdir=workdir,
      config=loop_lib.LoopConfig(
          total_steps=settings.steps, eval_every=settings.eval_every,
          checkpoint_every=settings.checkpoint_every, keep_checkpoints=settings.keep_checkpoints,
          best_metric="deferral_loss", best_mode="min", progress=settings.progress,
          desc=settings.desc),
      local_batch_fn=lambda step: train.rows(mesh_lib.local_rows(rows(step), mesh)),
      eval_fn=eval_fn,
      meta={"costs": dataclasses.asdict(spec),
            "settings": {"batch_size": settings.batch_size,
                         "optim": dataclasses.asdict(settings.optim),
                         "head_learning_rate": settings.head_learning_rate, "u": settings.u,
                         "seed": settings.seed},
            **(meta or {})})
  return trainable, last
