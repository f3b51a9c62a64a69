"""The pipeline's last two stages: evaluate on test (report files) and export the rejector.

Evaluation reads only the test rows of the agent store: each agent alone, the
trained rejector's allocation, random allocation with the rejector's shares,
the confidence cascades on each model agent's best-span probability, the oracle,
and the accuracy-cost curve over beta scales (from `pipeline.beta_curve`), and
what each configured budget (`eval.budgets`) realises. Budgets are met on the
rejector's logits for the validation articles of rejector_train, which it
never trained on, or for all of rejector_train (`eval.calibrate_on`); the
export carries those logits (`budget_calibration`) so that `l2d-jax route
--budget` can meet any budget from the export alone.
"""

import pathlib

import jax.numpy as jnp
import numpy as np

from l2d_jax import config as config_lib
from l2d_jax import pipeline
from l2d_jax.agents import fees as fees_lib
from l2d_jax.agents.pool import Pool, agent_tokenizer, final_expert
from l2d_jax.data.features import FeatureParams
from l2d_jax.data.sources import Splits
from l2d_jax.defer import budget as budget_lib
from l2d_jax.defer import costs as costs_lib
from l2d_jax.defer import policy
from l2d_jax.errors import ConfigError
from l2d_jax.evaluate import baselines, plot, report as report_lib
from l2d_jax.train import rejector as rejector_lib
from l2d_jax.train import sweep as sweep_lib


def test_table(config: config_lib.ExperimentConfig, pool: Pool,
               test: rejector_lib.RejectorData) -> baselines.AgentTable:
  loss_ExJ = np.asarray(costs_lib.select_loss(
      config.costs.loss, em_ExJ=test.scores["em"], f1_ExJ=test.scores["f1"],
      span_nll_ExJ=test.scores["span_nll"]))
  return baselines.AgentTable(
      names=pool.names, em_ExJ=test.scores["em"], f1_ExJ=test.scores["f1"], loss_ExJ=loss_ExJ,
      fee_J=pool.fees_J, flops_J=pool.flops_J,
      alpha_J=np.asarray(config.costs.alpha or (1.0,) * len(pool.names), np.float64),
      beta_scale=config.costs.beta_scale)


def check_rejector_fee(spec: str) -> None:
  """Refuses an `eval.rejector_fee` that `routing_cost` could not use, before anything runs."""
  if spec == "flops":
    return
  if spec == "latency":
    raise ConfigError("eval.rejector_fee='latency' is not supported: give 'flops' or a number")
  try:
    fees_lib.fee_from(spec)  # a non-negative number
  except ValueError as err:
    raise ConfigError(f"eval.rejector_fee: {err}") from None


CALIBRATION_SETS = ("validation", "rejector_train")


def check_eval(config: config_lib.ExperimentConfig) -> None:
  """Refuses curve settings and `eval.budgets` entries the report could not use, before
  anything runs (else the error would come after all the training)."""
  if config.eval.fee_offsets != 0 and config.eval.fee_offsets < 2:
    raise ConfigError(f"eval.fee_offsets must be 0 (none) or at least 2, got "
                      f"{config.eval.fee_offsets}")
  if config.eval.calibrate_on not in CALIBRATION_SETS:
    raise ConfigError(f"eval.calibrate_on must be one of {CALIBRATION_SETS}, got "
                      f"{config.eval.calibrate_on!r}")
  if config.eval.cascade_points < 2:
    raise ConfigError(f"eval.cascade_points must be at least 2, got {config.eval.cascade_points}")
  names = [agent.name for agent in config.agents]
  for spec in config.eval.budgets:
    try:
      budget = budget_lib.parse_budget(spec)
    except budget_lib.BudgetError as err:
      raise budget_lib.BudgetError(f"eval.budgets: {err}") from None
    if budget.agent is not None and budget.agent not in names:
      raise budget_lib.BudgetError(f"eval.budgets: {spec!r} caps {budget.agent!r}, which is no "
                                   f"agent of {config.name} ({', '.join(names)})")


def budget_calibration(config: config_lib.ExperimentConfig, pool: Pool,
                       stage) -> budget_lib.Calibration:
  """The rejector's logits on the rejector_train questions budgets are met on, priced as the report.

  `eval.calibrate_on` names them: the validation articles, or all of rejector_train.

  Every question pays the rejector's own fee (`routing_cost`) and the agents
  whose features it reads (`pipeline.paid_agents`), then the fee of the agent
  it goes to unless that one is paid already (`baselines.routing_fees`). Where
  rejector_train has too few articles to hold some out
  (`pipeline.validation_rows`), the rejector trained on these questions and
  `source` says so. Each question's article goes with it, so that budgets'
  standard errors are clustered by article (`budget.clustered_standard_error`).
  """
  train_rows, val_rows = pipeline.validation_rows(pool)
  held_out = not np.array_equal(train_rows, val_rows)
  if config.eval.calibrate_on == "rejector_train":
    val_rows = np.arange(pool.num_rejector_train)
  articles = len({pool.examples[i].title for i in val_rows})
  if not held_out:
    source = (f"all {len(val_rows)} rejector_train questions, which the rejector trained on "
              "(too few articles to hold some out): expect test to stray more than the "
              "standard error")
  elif config.eval.calibrate_on == "rejector_train":
    source = (f"all {len(val_rows)} rejector_train questions ({articles} articles, all but "
              "its validation ones trained on: `eval.calibrate_on=rejector_train`)")
  else:
    source = (f"{len(val_rows)} held-out rejector_train questions ({articles} validation "
              "articles the rejector never trained on)")
  rejector_fee, _ = routing_cost(config, pool, stage.model)
  fixed_fee, route_fee_J = baselines.routing_fees(pool.fees_J, rejector_fee,
                                                  pipeline.paid_agents(pool, stage.model))
  return budget_lib.Calibration(
      agent_names=tuple(pool.names),
      logits_ExJ=sweep_lib.classifier_logits(stage.model, stage.pooled_train_ExH[val_rows]),
      fee_J=route_fee_J, fixed_fee=fixed_fee, source=source,
      groups_E=[pool.examples[i].title for i in val_rows])


def routing_cost(config: config_lib.ExperimentConfig, pool: Pool, model) -> tuple[float, float]:
  """(fee, FLOPs) of the rejector's own forward pass over a question (its sources and head).

  The fee follows `eval.rejector_fee`: "flops" prices the FLOPs as the pool's
  most compute-hungry model agent is priced (its fee per FLOP: with "flops"
  fees, FLOPs divided by its FLOPs); a number is taken as it is. The agents
  whose features it reads are paid besides (`pipeline.paid_agents`).
  """
  check_rejector_fee(config.eval.rejector_fee)
  flops = model.flops()
  if config.eval.rejector_fee != "flops":
    return fees_lib.fee_from(config.eval.rejector_fee), flops
  reference = int(np.argmax(pool.flops_J))
  if not pool.flops_J[reference] > 0:
    raise ConfigError("eval.rejector_fee='flops' needs a model agent to compare the rejector's "
                     "FLOPs with; give the rejector's fee as a number (e.g. --set "
                     "eval.rejector_fee=0)")
  per_reference = fees_lib.fee_from("flops", flops, reference_flops=float(pool.flops_J[reference]))
  return per_reference * float(pool.fees_J[reference]), flops


def write_report(config: config_lib.ExperimentConfig, pool: Pool, splits: Splits, stage,
                 curve: list[tuple[float, np.ndarray]], out_dir: pathlib.Path,
                 timings: dict) -> dict:
  """report.json, report.md and tradeoff.png in `out_dir`; returns their paths."""
  test_rows = slice(pool.num_rejector_train, len(pool.examples))
  conf_ExJ = pool.store().example_table("prob_E", test_rows)
  if not np.isfinite(conf_ExJ[:, 0]).all():
    raise ConfigError(f"agent {pool.names[0]!r} (agent 0) has no confidence for the cascade: "
                     "the main model must be a model agent")
  cascade_from = {j: conf_ExJ[:, j] for j in range(1, len(pool.names))
                  if np.isfinite(conf_ExJ[:, j]).all()}
  logits_ExJ = sweep_lib.classifier_logits(stage.model, stage.pooled_test_ExH)
  alloc_E = np.asarray(policy.allocate(jnp.asarray(logits_ExJ)))
  metadata = {"experiment": config.name, "questions": splits.counts(),
              "evaluated_on": "test", "num_test": len(alloc_E), "loss": config.costs.loss,
              "beta_scale": config.costs.beta_scale, "fees": dict(zip(pool.names,
                                                                      map(float, pool.fees_J))),
              "flops_per_question": dict(zip(pool.names, map(float, pool.flops_J))),
              "rejector_validation": stage.train_metrics,
              "seconds": {k: round(v, 1) for k, v in timings.items()},
              "config": config_lib.to_dict(config)}
  rejector_fee, rejector_flops = routing_cost(config, pool, stage.model)
  calibration = budget_calibration(config, pool, stage) if config.eval.budgets else None
  if calibration is not None:
    metadata["budget_calibration"] = calibration.source
  report = report_lib.build_report(
      test_table(config, pool, stage.test), conf_ExJ[:, 0], alloc_E, curve,
      random_seeds=tuple(range(config.eval.random_seeds)), rejector_fee=rejector_fee,
      rejector_flops=rejector_flops, rejector_paid=pipeline.paid_agents(pool, stage.model),
      budgets=config.eval.budgets, calibration=calibration, rejector_logits_ExJ=logits_ExJ,
      fee_offsets=config.eval.fee_offsets, cascade_from=cascade_from,
      cascade_points=config.eval.cascade_points,
      test_groups_E=[example.title for example in pool.examples[test_rows]], metadata=metadata)
  json_path, md_path = report_lib.write_report(report, out_dir)
  png_path = plot.write_tradeoff(report, out_dir / "tradeoff.png")
  return {"report_json": str(json_path), "report_md": str(md_path), "tradeoff_png": str(png_path)}


def span_agents(config: config_lib.ExperimentConfig, pool: Pool, splits: Splits,
                model) -> dict:
  """The agents whose features the rejector reads, as they answered (`export.agent_features`).

  Each is rebuilt from the run's checkpoints and windowed and decoded as its
  store says it was precomputed.
  """
  from l2d_jax.export import agent_features  # pylint: disable=import-outside-toplevel
  configs = {agent.name: agent for agent in config.agents}
  store = pool.store()
  agents = {}
  for name in model.paid_agents:
    params = store.manifests[name]["params"]
    agents[name] = agent_features.SpanAgent(
        final_expert(configs[name], splits, pool.workdir),
        agent_tokenizer(configs[name], splits), FeatureParams(**params["features"]),
        params["max_answer_len"], params["null_threshold"])
  return agents


def export(config: config_lib.ExperimentConfig, pool: Pool, splits: Splits, stage,
           out_dir: pathlib.Path) -> dict:
  """The export directory: HF weights + tokenizer, StableHLO router, agents, budget calibration,
  and the feature functions of the agents the rejector reads."""
  from l2d_jax.export import bundle  # pylint: disable=import-outside-toplevel
  router_fee, router_flops = routing_cost(config, pool, stage.model)
  meta = bundle.AgentsMeta(
      fees_J=tuple(float(f) for f in pool.fees_J), alpha_J=tuple(stage.spec.alpha_J),
      loss=config.costs.loss, beta_scale=config.costs.beta_scale,
      flops_J=tuple(float(f) if f else None for f in pool.flops_J),
      router_fee=router_fee, router_flops=router_flops, router_reads=stage.model.paid_agents)
  bundle.export_rejector(stage.model, stage.tokenizer, out_dir, agent_names=pool.names,
                         agents_meta=meta, max_seq_len=config.rejector.max_seq_len,
                         calibration=budget_calibration(config, pool, stage),
                         span_agents=span_agents(config, pool, splits, stage.model))
  return {"export": str(out_dir)}
