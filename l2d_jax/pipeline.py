"""An experiment end to end: data, agents, rejector, evaluation, export.

    splits (data.sources) -> agent pool (agents.pool: fine-tune, precompute)
      -> rejector (rejector.sources: the configured feature sources under one head;
         train.rejector, on rejector_train; validation carved from it; with
         train.ensemble, several from different seeds, averaged by rejector.ensemble)
      -> accuracy-cost curve (heads over the trained rejector's features,
         one per beta scale, trained together by train.sweep)
      -> report (evaluate) on test -> export (export.*)

Every stage writes under `workdir` and is skipped or resumed when its output is
there, so `l2d-jax run` (and `l2d-jax demo`) can be rerun after an interruption.
"""

import dataclasses
import hashlib
import json
import logging
import pathlib
import time

import numpy as np

from l2d_jax import config as config_lib
from l2d_jax.agents.pool import Pool, agent_tokenizer, experiment_pool
from l2d_jax.data.sources import Splits, load_splits
from l2d_jax.data.tokenizer import load_tokenizer
from l2d_jax.errors import ConfigError
from l2d_jax.evaluate import baselines
from l2d_jax.models.hub import resolve_model_dir
from l2d_jax.rejector import ensemble
from l2d_jax.rejector import sources
from l2d_jax.train import mesh as mesh_lib
from l2d_jax.train import rejector as rejector_lib
from l2d_jax.train import sweep as sweep_lib

STAGES = ("data", "agents", "rejector", "report", "export")
VALIDATION_SHARE = 0.1


@dataclasses.dataclass
class RejectorStage:
  """The trained rejector, the data it was trained and is evaluated on, and its features.

  `pooled_train_ExH` and `pooled_test_ExH` are the trained rejector's features
  (its sources' vectors side by side: the encoder's pooled [CLS] state, the
  agent-feature layer) of every rejector_train and test question, computed
  once: the beta curve trains its heads on them and the report applies the
  rejector's own head to the test ones, instead of running the sources again.
  """
  model: object
  tokenizer: object
  spec: rejector_lib.CostSpec
  train: rejector_lib.RejectorData
  test: rejector_lib.RejectorData
  train_metrics: dict
  pooled_train_ExH: np.ndarray
  pooled_test_ExH: np.ndarray


def rejector_tokenizer(config: config_lib.ExperimentConfig, splits: Splits):
  """The rejector's tokenizer: configured, else its backbone's, else the first model agent's."""
  rejector = config.rejector
  if rejector.tokenizer:
    return load_tokenizer(rejector.tokenizer)
  if rejector.backbone != "scratch":
    return load_tokenizer(resolve_model_dir(rejector.backbone))
  model_agent = next((a for a in config.agents if a.kind == "model"), None)
  if model_agent is None:
    raise ConfigError("a rejector from scratch reads with the first model agent's tokenizer, "
                      "and the pool has none: set rejector.tokenizer or rejector.backbone")
  return agent_tokenizer(model_agent, splits)


def check_agents(config: config_lib.ExperimentConfig, until: str) -> None:
  """Refuses, before anything runs, a pool the stages up to `until` could not use.

  `costs.alpha` gives one weight per agent or none. Agent 0 is the main model,
  whose confidence the report's cascade reads: a report needs it to be a
  model agent.
  """
  if not config.agents:
    raise ConfigError("the experiment has no agents")
  if STAGES.index(until) >= STAGES.index("report") and config.agents[0].kind != "model":
    raise ConfigError(f"agents.0 ({config.agents[0].name!r}, kind {config.agents[0].kind!r}) is "
                      "the main model and must be a model agent: the cascade reads its "
                      "confidence")
  if config.costs.alpha and len(config.costs.alpha) != len(config.agents):
    raise ConfigError(f"costs.alpha has {len(config.costs.alpha)} values for "
                      f"{len(config.agents)} agents")


def cost_spec(config: config_lib.ExperimentConfig, pool: Pool,
              beta_scale: float | None = None,
              fees_J: np.ndarray | None = None) -> rejector_lib.CostSpec:
  """`alpha * loss + beta_scale * fee` with the pool's fees, or `fees_J` (`route_fees`)."""
  alpha = config.costs.alpha or (1.0,) * len(pool.names)  # its length: `check_agents`
  scale = config.costs.beta_scale if beta_scale is None else beta_scale
  fees_J = pool.fees_J if fees_J is None else fees_J
  return rejector_lib.CostSpec(config.costs.loss, tuple(float(a) for a in alpha),
                               tuple(float(scale * f) for f in fees_J))


def paid_agents(pool: Pool, model) -> list[int]:
  """The agents the rejector runs on every question to read their features, as indices.

  Each is paid on every question, as a cascade pays its main model; a question
  routed to one of them pays nothing more for it.
  """
  return [pool.names.index(name) for name in model.paid_agents]


def route_fees(pool: Pool, model) -> np.ndarray:
  """What routing a question to each agent adds to what it pays: the fees the rejector learns.

  An agent's fee, or 0 for one it runs on every question anyway (`paid_agents`):
  whichever agent answers, that fee is paid, so it cannot steer the choice.
  """
  return baselines.routing_fees(pool.fees_J, 0.0, paid_agents(pool, model))[1]


def rejector_data(pool: Pool, inputs: dict[str, np.ndarray]) -> rejector_lib.RejectorData:
  """Every evaluation question with its rejector `inputs` and all agents' stored scores."""
  store = pool.store()
  scores = {name: store.example_table(f"{name}_E") for name in rejector_lib.STORE_FIELDS}
  return rejector_lib.RejectorData(inputs, scores, [e.id for e in pool.examples])


def build_rejector(config: config_lib.ExperimentConfig, pool: Pool, tokenizer
                   ) -> tuple[object, rejector_lib.RejectorData]:
  """The configured rejector before training and every evaluation question's data for it.

  Sources that fit statistics (the agent features' standardisation) fit them
  on the rejector's training rows, rejector_train without its validation.
  """
  context = sources.SourceContext(config, pool, tokenizer)
  data = rejector_data(pool, sources.rejector_inputs(context))
  return _fresh_member(context, data), data


def _fresh_member(context: sources.SourceContext, data: rejector_lib.RejectorData):
  """An untrained rejector of `context`'s config, its sources fitted on the training rows."""
  train_rows, _ = validation_rows(context.pool)
  return sources.build_rejector(context, {k: v[train_rows] for k, v in data.inputs.items()})


def member_config(config: config_lib.ExperimentConfig, member: int
                  ) -> config_lib.ExperimentConfig:
  """Ensemble member `member`'s config: the experiment's, its seed `train.seed + member`."""
  return dataclasses.replace(config, train=dataclasses.replace(
      config.train, seed=config.train.seed + member))


def member_workdir(workdir: pathlib.Path, member: int) -> pathlib.Path:
  """Where member `member` trains: `rejector/` for the first (a lone rejector's), then
  `rejector_member1/`, ..., so that adding members resumes the first's checkpoints."""
  return workdir / ("rejector" if member == 0 else f"rejector_member{member}")


def check_ensemble(config: config_lib.ExperimentConfig) -> None:
  """Refuses an ensemble of no rejector, or of frozen sources, before anything runs.

  Members over frozen sources would share the encoder and differ only in where
  their linear heads start, on one convex problem: N times the fee for one head.
  """
  if config.train.ensemble < 1:
    raise ConfigError(f"train.ensemble is the number of rejectors to train and average, at "
                      f"least 1, got {config.train.ensemble}")
  if config.train.ensemble > 1 and config.rejector.frozen_encoder:
    raise ConfigError("train.ensemble > 1 needs trained sources: with rejector.frozen_encoder "
                      "the members would differ only in their linear heads' start (sweep "
                      "heads with `l2d-jax sweep` instead)")


def validation_rows(pool: Pool) -> tuple[np.ndarray, np.ndarray]:
  """rejector_train rows split into (train, validation) by a hash of the article title."""
  titles = [e.title for e in pool.examples[:pool.num_rejector_train]]
  held = np.array([hashlib.sha256(t.encode()).digest()[0] < 256 * VALIDATION_SHARE
                   for t in titles], bool)
  if held.all() or not held.any():  # too few articles to hold some out: validate on train
    return np.arange(len(titles)), np.arange(len(titles))
  return np.flatnonzero(~held), np.flatnonzero(held)


def train_rejector_stage(config: config_lib.ExperimentConfig, pool: Pool, splits: Splits,
                         workdir: pathlib.Path, mesh) -> RejectorStage:
  """The trained rejector (or `train.ensemble` of them, averaged), with its features.

  Each member trains from its own seed (`member_config`) in its own directory
  (`member_workdir`), where its checkpoints resume it. A lone rejector's
  `train_metrics` are its training's last evaluation; an ensemble's are its
  mean logits' on the validation rows.
  """
  check_ensemble(config)
  tokenizer = rejector_tokenizer(config, splits)
  model, data = build_rejector(config, pool, tokenizer)
  spec = cost_spec(config, pool, fees_J=route_fees(pool, model))
  if not all(np.isfinite(spec.costs(data.scores)).all(axis=0)):
    raise ConfigError(f"costs with loss {config.costs.loss!r} are not finite for every agent "
                     "(span_nll needs logits: predictions-file and human agents have none)")
  members, pooled = [], []
  for i in range(config.train.ensemble):
    own = member_config(config, i)
    member = model if i == 0 else _fresh_member(sources.SourceContext(own, pool, tokenizer), data)
    desc = f"rejector {i + 1}/{config.train.ensemble}" if config.train.ensemble > 1 else "rejector"
    member, metrics, pooled_ExH = _train_member(member, data, spec, pool, own,
                                                member_workdir(workdir, i), mesh, desc)
    members.append(member)
    pooled.append(pooled_ExH)
  model = members[0]
  if len(members) > 1:  # its features: the members', side by side
    model, pooled_ExH = ensemble.Ensemble(members), np.concatenate(pooled, axis=1)
    _, val_rows = validation_rows(pool)
    metrics = rejector_lib.allocation_metrics(
        sweep_lib.classifier_logits(model, pooled_ExH[val_rows]), data.select(val_rows), spec)
  n = pool.num_rejector_train
  test = data.select(np.arange(n, len(pool.examples)))
  return RejectorStage(model, tokenizer, spec, data.select(np.arange(n)), test, metrics,
                       pooled_train_ExH=pooled_ExH[:n], pooled_test_ExH=pooled_ExH[n:])


def _train_member(model, data: rejector_lib.RejectorData, spec: rejector_lib.CostSpec,
                  pool: Pool, config: config_lib.ExperimentConfig, workdir: pathlib.Path, mesh,
                  desc: str) -> tuple[object, dict, np.ndarray]:
  """One rejector trained: (the model, its metrics, its features of every question).

  `desc` names its progress bars (training, then its features).
  """
  r, t = config.rejector, config.train
  train_rows, val_rows = validation_rows(pool)
  train = data.select(train_rows)
  if r.frozen_encoder:  # the sources are final already: their features serve training and report
    pooled_ExH = sweep_lib.pooled_features(model, data.inputs, mesh=mesh,
                                           desc=f"frozen sources: {desc} features")
    metrics = _train_frozen(model, pooled_ExH[train_rows], train, pool, spec, config)
    return model, metrics, pooled_ExH
  settings = rejector_lib.RejectorSettings(
      steps=t.steps, batch_size=t.batch_size, optim=t.optim,
      head_learning_rate=t.head_learning_rate, u=t.u, seed=t.seed, eval_every=t.eval_every,
      checkpoint_every=t.checkpoint_every, keep_checkpoints=t.keep_checkpoints, desc=desc)
  trainable, metrics = rejector_lib.train_rejector(
      model, train, spec, settings, workdir=workdir, validation=data.select(val_rows), mesh=mesh,
      meta={"agents": list(pool.names), "rejector": config_lib.to_dict(config)["rejector"],
            "reads": model.records()})
  model = trainable.model()
  return model, metrics, sweep_lib.pooled_features(model, data.inputs, mesh=mesh,
                                                   desc=f"{desc} features")


def _train_frozen(model, pooled_ExH: np.ndarray, train: rejector_lib.RejectorData, pool: Pool,
                  spec, config) -> dict:
  """Frozen-encoder mode: only the linear head is trained, on `train`'s features."""
  point = sweep_lib.SweepPoint(beta_scale=config.costs.beta_scale,
                               learning_rate=(config.train.head_learning_rate
                                              or config.train.optim.learning_rate),
                               u=config.train.u,
                               seed=config.train.seed)
  kernels, biases = sweep_lib.train_heads(
      pooled_ExH, train.scores, route_fees(pool, model), config.costs.loss, [point],
      sweep_lib.HeadTraining(steps=config.train.steps, batch_size=config.train.batch_size))
  model.classifier.kernel[...] = kernels[0]
  model.classifier.bias[...] = biases[0]
  return rejector_lib.allocation_metrics(pooled_ExH @ kernels[0] + biases[0], train, spec)


def beta_curve(stage: RejectorStage, pool: Pool, config: config_lib.ExperimentConfig
               ) -> list[tuple[float, np.ndarray]]:
  """(beta scale, test allocation) per configured scale: heads on the trained encoder's features.

  Retraining the whole rejector per beta scale would multiply the cost of the
  curve by its length; instead the trained rejector's encoder is frozen and one
  linear head per scale is trained on rejector_train (all scales in one vmapped
  program), then applied to test.
  """
  points = [sweep_lib.SweepPoint(beta_scale=b, learning_rate=1e-2, u=config.train.u,
                                 seed=config.train.seed) for b in config.eval.beta_scales]
  kernels, biases = sweep_lib.train_heads(
      stage.pooled_train_ExH, stage.train.scores, route_fees(pool, stage.model),
      config.costs.loss, points, sweep_lib.HeadTraining(steps=300, batch_size=256))
  return [(p.beta_scale, np.argmax(stage.pooled_test_ExH @ k + b, axis=1))
          for p, k, b in zip(points, kernels, biases)]


def run(config: config_lib.ExperimentConfig, *, until: str = "export") -> dict:
  """Runs the stages up to `until`; returns where the outputs are."""
  if until not in STAGES:
    raise ValueError(f"unknown stage {until!r}; one of {STAGES}")
  from l2d_jax import report_stage  # pylint: disable=import-outside-toplevel
  report_stage.check_rejector_fee(config.eval.rejector_fee)  # not only after hours of training
  check_agents(config, until)
  sources.check(config)
  check_ensemble(config)
  report_stage.check_eval(config)
  workdir = pathlib.Path(config.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(json.dumps(config_lib.to_dict(config), indent=1))
  mesh = mesh_lib.make_mesh(config.train.num_devices or None)
  timings, outputs = {}, {"workdir": str(workdir)}
  start = time.perf_counter()
  splits = load_splits(config.data, workdir)
  logging.info("splits: %s", splits.counts())
  timings["data"] = time.perf_counter() - start
  if until == "data":
    return outputs
  pool = experiment_pool(config, splits, mesh)
  timings["agents"] = time.perf_counter() - start - sum(timings.values())
  outputs["store"] = str(pool.store_dir)
  if until == "agents":
    return outputs
  stage = train_rejector_stage(config, pool, splits, workdir, mesh)
  timings["rejector"] = time.perf_counter() - start - sum(timings.values())
  if until == "rejector":
    return outputs
  outputs.update(report_stage.write_report(config, pool, splits, stage, beta_curve(
      stage, pool, config), workdir / "report", timings))
  timings["report"] = time.perf_counter() - start - sum(timings.values())
  if until == "report":
    return outputs
  outputs.update(report_stage.export(config, pool, splits, stage, workdir / "export"))
  timings["export"] = time.perf_counter() - start - sum(timings.values())
  outputs["timings"] = timings
  return outputs
