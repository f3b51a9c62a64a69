"""How much of the per-question choice between two agents a text encoder can predict.

A rejector beats random allocation at the same shares only by what its input
tells about which agent is cheaper on each question. This probe measures that
outside the method, for two agents `a` and `b` of an experiment whose agent
store exists (it is computed first otherwise). It regresses the per-question
cost difference `c_a - c_b` on frozen features of the rejector's input
(question and context at `--max-seq-len` tokens): the last hidden states of
the backbone's first `--layers` layers, or of a model agent's fine-tuned
encoder with `--expert`, mean-pooled over the tokens with the [CLS] state
appended. The regression is ridge, its penalty chosen by 5-fold
cross-validation on rejector_train with each article in one fold. On test, for each share of `b`, it sends
the questions with the largest predicted difference to `b` and the rest to
`a`, and prints how much lower the mean cost and how much higher F1 are than
with the same shares drawn at random (the exact expectation), with the paired
standard error. For reference it does the same with agent `a`'s own best-span
probability as the score (what a cascade from `a` reads, at the price of
running `a` on every question; its fee and F1 as a cascade are printed too)
and with the true difference (the oracle).

  python experiments/analysis/routing_signal.py --config squad_v1_minilm --agents minilm-6L,human
"""

import argparse
import pathlib

import jax.numpy as jnp
import numpy as np

from l2d_jax import config as config_lib
from l2d_jax import pipeline
from l2d_jax.agents.pool import agent_tokenizer, build_expert, experiment_pool
from l2d_jax.data.sources import load_splits
from l2d_jax.data.tokenizer import load_tokenizer
from l2d_jax.models import hf_import
from l2d_jax.models.hub import resolve_model_dir
from l2d_jax.train import checkpoint, inference
from l2d_jax.train import mesh as mesh_lib
from l2d_jax.train.rejector import INPUTS, rejector_inputs

PENALTIES = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)


def _pooled(model, batch: dict):
  """Mean-pooled (over unmasked tokens) and [CLS] last hidden states, `[B, 2H]`."""
  hidden_BxLxH = model.encoder(*(batch[k] for k in INPUTS)).astype(jnp.float32)
  mask_BxLx1 = batch["attention_mask"][..., None].astype(jnp.float32)
  mean_BxH = (hidden_BxLxH * mask_BxLx1).sum(1) / mask_BxLx1.sum(1)
  return jnp.concatenate([mean_BxH, hidden_BxLxH[:, 0]], axis=-1)


def frozen_features(model, inputs: dict, mesh) -> np.ndarray:
  """`_pooled` of every row of `inputs`, float64 `[E, 2H]`."""
  return np.asarray(inference.apply_in_batches(model, _pooled, inputs, mesh=mesh,
                                               desc="frozen features"), np.float64)


def ridge_predictions(x_ExH: np.ndarray, y_E: np.ndarray, groups_E, num_train: int,
                      seed: int = 0) -> tuple[np.ndarray, float]:
  """Ridge fitted on the first `num_train` rows; every row's prediction, and the penalty.

  The penalty is chosen by 5-fold cross-validation on those rows, each group
  (an article: its questions share a context) in one fold, as test articles
  are disjoint from the training ones.
  """
  _, group_E = np.unique(np.asarray(groups_E)[:num_train], return_inverse=True)
  folds = np.random.default_rng(seed).permutation(group_E.max() + 1)[group_E] % 5

  def fit(rows):
    mean, std = x_ExH[rows].mean(0), x_ExH[rows].std(0) + 1e-6
    design = lambda x: np.c_[(x - mean) / std, np.ones(len(x))]
    return design, design(x_ExH[rows])

  def solve(z, y, penalty):
    eye = np.eye(z.shape[1])
    eye[-1, -1] = 0.0  # the intercept is not penalised
    return np.linalg.solve(z.T @ z + penalty * eye, z.T @ y)

  errors = []
  for penalty in PENALTIES:
    error = 0.0
    for k in range(5):
      train = np.flatnonzero(folds != k)
      held = np.flatnonzero(folds == k)
      design, z = fit(train)
      error += float(((design(x_ExH[held]) @ solve(z, y_E[train], penalty) - y_E[held]) ** 2).sum())
    errors.append(error)
  penalty = PENALTIES[int(np.argmin(errors))]
  design, z = fit(np.arange(num_train))
  return design(x_ExH) @ solve(z, y_E[:num_train], penalty), penalty


def gains(score_E: np.ndarray, cost_Ex2: np.ndarray, f1_Ex2: np.ndarray, share: float) -> dict:
  """Routing the top `share` of `score_E` to agent b, against the same share at random.

  Returns, for "cost" and "f1", (mean difference, its standard error), and the
  share actually routed to b (`share` rounded to whole questions).
  """
  chosen = np.zeros(len(score_E), bool)
  chosen[np.argsort(-score_E, kind="stable")[:int(round(share * len(score_E)))]] = True
  out = {"share": float(chosen.mean())}
  for name, table in (("cost", cost_Ex2), ("f1", f1_Ex2)):
    routed_E = np.where(chosen, table[:, 1], table[:, 0])
    random_E = (1 - chosen.mean()) * table[:, 0] + chosen.mean() * table[:, 1]
    diff_E = routed_E - random_E
    out[name] = (float(diff_E.mean()), float(diff_E.std(ddof=1) / np.sqrt(len(diff_E))))
  return out


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True, help="experiment name or file")
  parser.add_argument("--workdir", help="the run whose agent store to read (default: the config's)")
  parser.add_argument("--beta-scale", type=float, help="default: the config's costs.beta_scale")
  parser.add_argument("--agents", required=True, help="a,b: the two agents to choose between")
  parser.add_argument("--backbone", default="all-MiniLM-L6-v2")
  parser.add_argument("--layers", type=int, default=2, help="the backbone's first layers")
  parser.add_argument("--expert", help="read features from this model agent's fine-tuned "
                      "encoder instead (its checkpoint in the workdir, its tokenizer)")
  parser.add_argument("--max-seq-len", type=int, default=128)
  parser.add_argument("--shares", default="0.2,0.4,0.5,0.6,0.8", help="shares of agent b")
  args = parser.parse_args(argv)

  config = config_lib.load_config(args.config)
  if args.workdir:
    config.workdir = args.workdir
  if args.beta_scale is not None:
    config.costs.beta_scale = args.beta_scale
  workdir = pathlib.Path(config.workdir)
  mesh = mesh_lib.make_mesh()
  splits = load_splits(config.data, workdir)
  pool = experiment_pool(config, splits, mesh)
  names = args.agents.split(",")
  if len(names) != 2 or any(n not in pool.names for n in names):
    raise SystemExit(f"--agents: two of {pool.names}, got {args.agents!r}")
  pair = [pool.names.index(n) for n in names]
  if args.expert:  # the fine-tuned expert's own encoder, as its run left it
    agent = next((a for a in config.agents if a.name == args.expert and a.kind == "model"), None)
    if agent is None:
      raise SystemExit(f"--expert {args.expert!r} is not a model agent of {args.config}")
    checkpoints = pool.workdir / "experts" / agent.name / "checkpoints"
    if checkpoint.latest_finished_step(checkpoints) is None:
      raise SystemExit(f"--expert {args.expert!r}: no fine-tuned checkpoint in {checkpoints}")
    tokenizer = agent_tokenizer(agent, splits)
    model, _ = build_expert(agent, len(tokenizer))
    checkpoint.restore_params_into(model, checkpoints)
    source = f"{agent.name}'s fine-tuned"
  else:
    tokenizer = load_tokenizer(resolve_model_dir(args.backbone))
    model = hf_import.load_pretrained(resolve_model_dir(args.backbone), task="classify",
                                      num_labels=2, num_layers=args.layers).model
    source = f"{args.layers}-layer {args.backbone}"
  data = pipeline.rejector_data(pool, rejector_inputs(pool.examples, tokenizer, args.max_seq_len))
  cost_ExJ = np.asarray(pipeline.cost_spec(config, pool).costs(data.scores), np.float64)
  cost_Ex2, f1_Ex2 = cost_ExJ[:, pair], data.scores["f1"][:, pair].astype(np.float64)
  n = pool.num_rejector_train
  difference_E = cost_Ex2[:, 0] - cost_Ex2[:, 1]
  predicted_E, penalty = ridge_predictions(frozen_features(model, data.inputs, mesh),
                                           difference_E, [e.title for e in pool.examples], n)
  confidence_E = pool.store().example_table("prob_E")[:, pair[0]]
  scores = [  # (label, score: high sends to b, whether it is a cascade from a)
      (f"ridge on {source} features at {args.max_seq_len} tokens (penalty {penalty:g})",
       predicted_E, False),
      (f"{names[0]}'s own confidence (runs {names[0]} on every question)", -confidence_E, True),
      ("oracle (the true difference)", difference_E, False)]
  if not np.isfinite(confidence_E).all():  # humans and predictions files without probabilities
    print(f"{names[0]} has no confidence per question: no cascade row")
    del scores[1]
  print(f"{pool.names} at beta scale {config.costs.beta_scale:g}; choosing between {names[0]} "
        f"(a) and {names[1]} (b) on {len(pool.examples) - n} test questions "
        f"(fit on {n} rejector_train questions)")
  print(f"test means: cost a {cost_Ex2[n:, 0].mean():.4f}, b {cost_Ex2[n:, 1].mean():.4f}; "
        f"F1 a {f1_Ex2[n:, 0].mean():.4f}, b {f1_Ex2[n:, 1].mean():.4f}")
  fee_a, fee_b = (float(pool.fees_J[j]) for j in pair)
  mean_f1_a, mean_f1_b = f1_Ex2[n:].mean(0)
  for label, score_E, cascade in scores:
    print(f"\n{label}\n  share b   cost vs random        F1 vs random" +
          ("       as a cascade from a: fee, F1; random mixing at that fee" if cascade else ""))
    for share in (float(s) for s in args.shares.split(",")):
      g = gains(score_E[n:], cost_Ex2[n:], f1_Ex2[n:], share)
      line = (f"  {share:7.2f}   {g['cost'][0]:+.4f} ± {g['cost'][1]:.4f}    "
              f"{g['f1'][0]:+.4f} ± {g['f1'][1]:.4f}")
      if cascade:  # a runs on every question; the deferred ones pay b as well
        routed = g["share"]
        fee = fee_a + routed * fee_b
        order = np.argsort([fee_a, fee_b])
        mixed = np.interp(fee, np.array([fee_a, fee_b])[order],
                          np.array([mean_f1_a, mean_f1_b])[order])
        f1 = (1 - routed) * mean_f1_a + routed * mean_f1_b + g["f1"][0]
        line += f"    {fee:.3f}, {f1:.4f}; {mixed:.4f}"
      print(line)


if __name__ == "__main__":
  main()
