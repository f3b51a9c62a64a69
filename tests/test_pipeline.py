"""End to end: `l2d-jax run` on a tiny demo, its outputs, and a rerun that resumes."""

import dataclasses
import json
import pathlib
import shutil
import sys

import numpy as np
import pytest

from l2d_jax import cli
from l2d_jax import config as config_lib
from l2d_jax import pipeline
from l2d_jax import report_stage
from l2d_jax import sweep_stage
from l2d_jax.agents import feature_file
from l2d_jax.agents import store as store_lib
from l2d_jax.agents.pool import prepare_pool
from l2d_jax.data import squad
from l2d_jax.data.sources import load_splits
from l2d_jax.errors import ConfigError
from l2d_jax.export import bundle
from l2d_jax.export import loader
from l2d_jax.rejector import ensemble
from l2d_jax.train import mesh as mesh_lib
from l2d_jax.train import rejector as rejector_lib
from l2d_jax.train import sweep as sweep_lib

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


def test_run_writes_report_and_export_and_rerun_resumes(tmp_path, capsys):
  config = tmp_path / "smoke.py"
  config.write_text("import sys\nsys.path.insert(0, %r)\nfrom demo import smoke_config as "
                    "get_config\n" % str(EXPERIMENTS))
  run = ["run", "--config", str(config), "--workdir", str(tmp_path / "w"),
         "--set", "eval.budgets=('share:medium-2L<=0.5', 'fee=99')",
         "--set", "eval.fee_offsets=4", "--set", "eval.cascade_points=5"]
  assert cli.main(run) == 0
  outputs = json.loads(capsys.readouterr().out)
  report = json.loads(pathlib.Path(outputs["report_json"]).read_text())
  assert {"agents", "rejector", "baselines", "curve"} <= report.keys()
  # The curve: a head per beta scale, then the rejector at 4 fee offsets; a cascade from
  # each model agent to the other, its thresholds 5 quantiles of that agent's confidence and
  # one above every confidence (fewer if some coincide).
  points = report["curve"]["rejector"]["points"]
  assert [p["lambda"] is None for p in points] == [True] * 3 + [False] * 4
  assert report["baselines"]["cascade"]["mains"] == ["small-1L", "medium-2L"]
  mains = [p["main"] for p in report["curve"]["cascade"]["points"]]
  assert 2 <= mains.count("small-1L") <= 6 and 2 <= mains.count("medium-2L") <= 6
  assert [a["agent"] for a in report["agents"]] == ["small-1L", "medium-2L"]
  # The rejector pays its own forward pass, in the agents' FLOPs fee units.
  meta = report["metadata"]
  assert meta["rejector_fee"] == pytest.approx(
      meta["rejector_flops"] / max(meta["flops_per_question"].values()))
  assert 0 < meta["rejector_fee"] < 1
  assert pathlib.Path(outputs["tradeoff_png"]).stat().st_size > 10_000
  export = pathlib.Path(outputs["export"])
  assert {"model.safetensors", "config.json", "router.stablehlo", "agents.json"} <= {
      p.name for p in export.iterdir()}
  # Budgets are met on the held-out rejector logits, which the export carries for `route`.
  capped, unreachable = report["budgets"]
  assert capped["held_out"]["shares"]["medium-2L"] <= 0.5
  assert capped["test"]["fee"] == pytest.approx(
      meta["rejector_fee"] + sum(capped["test"]["shares"][a["agent"]] * a["fee"]
                                 for a in report["agents"]))
  assert "'fee=99' is out of reach" in unreachable["error"]
  calibration = bundle.read_calibration(export)
  assert calibration.agent_names == ("small-1L", "medium-2L")
  assert calibration.fixed_fee == pytest.approx(meta["rejector_fee"])
  assert calibration.num_questions == capped["held_out"]["num_questions"]
  assert len(calibration.groups_E) == calibration.num_questions  # each question's article
  assert capped["test_standard_error"] is not None
  assert "rejector_train questions" in meta["budget_calibration"]
  # a rerun finds every stage done: same store, same rejector, same report numbers
  shutil.rmtree(tmp_path / "w" / "report")
  assert cli.main(run) == 0
  again = json.loads(pathlib.Path(json.loads(capsys.readouterr().out)["report_json"]).read_text())
  assert again["rejector"] == report["rejector"]
  assert again["agents"] == report["agents"]
  # Another rejector over the same agents (pool_from): nothing of the pool is rebuilt.
  variant = ["run", "--config", str(config), "--workdir", str(tmp_path / "v"),
             "--set", f"pool_from={tmp_path / 'w'}", "--set", "rejector.inputs=agents"]
  assert cli.main(variant) == 0
  other = json.loads(pathlib.Path(json.loads(capsys.readouterr().out)["report_json"]).read_text())
  assert other["agents"] == report["agents"]
  assert not {"experts", "store", "cache"} & {p.name for p in (tmp_path / "v").iterdir()}
  # A pool_from run that lacks an agent, or made it otherwise, is one line, never rebuilt.
  for bad, reason in ((tmp_path / "v", "is not complete in the pool_from run"),
                      (tmp_path / "w", "was made with other settings")):
    argv = [*variant, "--set", f"pool_from={bad}", "--set", "agents.0.finetune.epochs=9.0"]
    assert cli.main(argv) == 2
    assert reason in capsys.readouterr().err


def test_rejector_stage_features_give_the_models_own_logits(tmp_path, monkeypatch):
  """In both rejector modes the stage's pooled features are the final encoder's, and its head
  on them gives the whole model's logits: the beta curve and the report use them instead of
  running the encoder again."""
  monkeypatch.syspath_prepend(str(EXPERIMENTS))
  from demo import smoke_config  # pylint: disable=import-outside-toplevel
  config = smoke_config()
  mesh = mesh_lib.make_mesh()
  splits = load_splits(config.data, tmp_path)
  pool = prepare_pool(config, splits, tmp_path, mesh)
  for frozen in (False, True):
    config = config_lib.override(config, f"rejector.frozen_encoder={frozen}")
    stage = pipeline.train_rejector_stage(config, pool, splits, tmp_path / str(frozen), mesh)
    for pooled_ExH, data in ((stage.pooled_train_ExH, stage.train),
                             (stage.pooled_test_ExH, stage.test)):
      assert pooled_ExH.shape[0] == data.num_examples
      np.testing.assert_allclose(pooled_ExH, sweep_lib.pooled_features(stage.model, data.inputs),
                                 rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(sweep_lib.classifier_logits(stage.model, pooled_ExH),
                                 rejector_lib.predict_logits(stage.model, data.inputs),
                                 rtol=1e-4, atol=1e-5)


def test_agent_init_from_starts_from_another_runs_expert(tmp_path, monkeypatch):
  """An agent with `init_from` and no fine-tuning answers exactly as the expert it names."""
  monkeypatch.syspath_prepend(str(EXPERIMENTS))
  from demo import smoke_config  # pylint: disable=import-outside-toplevel
  config = config_lib.override(smoke_config(), f"workdir={tmp_path / 'first'}")
  pipeline.run(config, until="agents")
  name = config.agents[1].name
  second = config_lib.override(config, f"workdir={tmp_path / 'second'}")
  second = config_lib.override(
      second, f"agents.1.init_from={tmp_path / 'first' / 'experts' / name / 'checkpoints'}")
  second = config_lib.override(second, "agents.1.finetune.epochs=0")
  pipeline.run(second, until="agents")
  first_store = store_lib.AgentStore(tmp_path / "first" / "store", [name])
  second_store = store_lib.AgentStore(tmp_path / "second" / "store", [name])
  for field in ("f1_E", "score_E", "prob_E"):
    np.testing.assert_allclose(second_store.example_table(field), first_store.example_table(field),
                               rtol=1e-5, atol=1e-6)
  # Without it the same agent is the untrained model, which answers otherwise.
  third = config_lib.override(config_lib.override(config, f"workdir={tmp_path / 'third'}"),
                              "agents.1.finetune.epochs=0")
  pipeline.run(third, until="agents")
  assert not np.allclose(store_lib.AgentStore(tmp_path / "third" / "store", [name]).example_table(
      "score_E"), first_store.example_table("score_E"))


def test_a_resumed_expert_restores_its_own_checkpoint_not_init_from(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(EXPERIMENTS))
  from demo import smoke_config  # pylint: disable=import-outside-toplevel
  first = config_lib.override(smoke_config(), f"workdir={tmp_path / 'first'}")
  first = dataclasses.replace(first, agents=first.agents[:1])
  pipeline.run(first, until="agents")
  name = first.agents[0].name
  source = tmp_path / "first" / "experts" / name / "checkpoints"
  second = config_lib.override(config_lib.override(first, f"workdir={tmp_path / 'second'}"),
                               f"agents.0.init_from={source}")
  pipeline.run(second, until="agents")
  scores = store_lib.AgentStore(tmp_path / "second" / "store", [name]).example_table("score_E")
  # Fine-tuned from the first expert, the second has its own checkpoint: with the source gone
  # and its store deleted, a rerun restores that checkpoint and answers exactly as before.
  shutil.rmtree(tmp_path / "first")
  shutil.rmtree(tmp_path / "second" / "store")
  pipeline.run(second, until="agents")
  np.testing.assert_array_equal(
      store_lib.AgentStore(tmp_path / "second" / "store", [name]).example_table("score_E"), scores)


def test_a_killed_expert_fine_tune_resumes_from_its_last_checkpoint(tmp_path, monkeypatch, caplog):
  """Experts checkpoint every `train.checkpoint_every` steps: a run killed mid fine-tune
  resumes there (not from step 0) and ends with the same expert."""
  monkeypatch.syspath_prepend(str(EXPERIMENTS))
  from demo import smoke_config  # pylint: disable=import-outside-toplevel
  config = config_lib.override(smoke_config(), f"workdir={tmp_path}")
  config = config_lib.override(dataclasses.replace(config, agents=config.agents[:1]),
                               "train.checkpoint_every=1")
  for setting in ("agents.0.finetune.epochs=2", "agents.0.finetune.batch_size=8"):  # 4+ steps
    config = config_lib.override(config, setting)
  pipeline.run(config, until="agents")
  name = config.agents[0].name
  checkpoints = tmp_path / "experts" / name / "checkpoints"
  steps = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
  assert len(steps) == 3 and steps == list(range(steps[-1] - 2, steps[-1] + 1)) and steps[0] > 0
  scores = store_lib.AgentStore(tmp_path / "store", [name]).example_table("score_E")
  shutil.rmtree(checkpoints / str(steps[-1]))  # killed before its last step was saved
  shutil.rmtree(tmp_path / "store")
  with caplog.at_level("INFO"):
    pipeline.run(config, until="agents")
  assert f"at step {steps[-2]}" in caplog.text
  np.testing.assert_array_equal(
      store_lib.AgentStore(tmp_path / "store", [name]).example_table("score_E"), scores)
  # Another recipe does not resume that expert: it would go on from another fine-tune.
  shutil.rmtree(tmp_path / "store")
  with pytest.raises(ConfigError, match=r"trained under other settings "
                     r"\(recipe.optim.learning_rate .* there, 0.123 now\)"):
    pipeline.run(config_lib.override(config, "agents.0.finetune.optim.learning_rate=0.123"),
                 until="agents")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  """The smoke demo's workdir with its data and agent store (the agents' stages done)."""
  sys.path.insert(0, str(EXPERIMENTS))
  try:
    from demo import smoke_config  # pylint: disable=import-outside-toplevel
  finally:
    sys.path.remove(str(EXPERIMENTS))
  workdir = tmp_path_factory.mktemp("smoke")
  config = config_lib.override(smoke_config(), f"workdir={workdir}")
  pipeline.run(config, until="agents")
  return config


@pytest.mark.parametrize("inputs,parts", [("text", "statistics,hidden"),
                                          ("agents", "statistics,hidden"),
                                          ("text,agents", "statistics,hidden"),
                                          ("agents", "statistics")])
def test_rejector_reads_the_text_the_agents_features_or_both(tmp_path, smoke_run, inputs, parts):
  """Each input choice trains, its features are the sources' vectors side by side (the head on
  them gives the model's logits), and the report pays the feature agent on every question."""
  config = config_lib.override(smoke_run, f"rejector.inputs={inputs}")
  config = config_lib.override(config, f"rejector.agent_parts={parts}")
  mesh = mesh_lib.make_mesh()
  splits = load_splits(config.data, config.workdir)
  pool = prepare_pool(config, splits, config.workdir, mesh)
  stage = pipeline.train_rejector_stage(config, pool, splits, tmp_path, mesh)
  reads_agents = "agents" in inputs
  statistics, hidden = pool.store().agent_features(pool.names[0])
  read = np.concatenate([statistics, hidden][:2 if "hidden" in parts else 1], axis=1)
  widths = {"text": config.rejector.hidden_size,
            "agents": read.shape[1] + config.rejector.agent_hidden}
  assert stage.model.source_names == tuple(inputs.split(","))
  assert stage.pooled_test_ExH.shape == (stage.test.num_examples,
                                         sum(widths[name] for name in inputs.split(",")))
  np.testing.assert_allclose(sweep_lib.classifier_logits(stage.model, stage.pooled_test_ExH),
                             rejector_lib.predict_logits(stage.model, stage.test.inputs),
                             rtol=1e-4, atol=1e-5)
  if reads_agents:  # the raw features of agent 0 are those precompute stored, statistics first
    np.testing.assert_array_equal(stage.test.inputs["agent_features"],
                                  read[pool.num_rejector_train:])
  assert np.isfinite(stage.train_metrics["deferral_loss"])
  # trained on what a route adds: small-1L, run on every question to read it, adds nothing
  scale = config.costs.beta_scale
  assert stage.spec.beta_J == pytest.approx(
      [0.0 if reads_agents else scale * pool.fees_J[0], scale * pool.fees_J[1]])
  outputs = report_stage.write_report(config, pool, splits, stage,
                                      pipeline.beta_curve(stage, pool, config),
                                      tmp_path / "report", {})
  report = json.loads(pathlib.Path(outputs["report_json"]).read_text())
  meta = report["metadata"]
  assert meta["rejector_reads"] == ([pool.names[0]] if reads_agents else [])
  assert meta["rejector_flops"] == pytest.approx(stage.model.flops())
  alloc_E = np.argmax(sweep_lib.classifier_logits(stage.model, stage.pooled_test_ExH), axis=1)
  fee_J = pool.fees_J.astype(np.float64)
  if reads_agents:  # small-1L runs on every question; routing to it adds nothing
    expected = np.where(alloc_E == 0, 0.0, fee_J[alloc_E]).mean() + fee_J[0]
  else:
    expected = fee_J[alloc_E].mean()
  assert report["rejector"]["fee"] == pytest.approx(expected + meta["rejector_fee"])


def test_budgets_are_met_on_the_validation_articles_or_all_of_rejector_train(tmp_path, smoke_run,
                                                                            monkeypatch):
  config = config_lib.override(smoke_run, "rejector.inputs=agents")
  mesh = mesh_lib.make_mesh()
  splits = load_splits(config.data, config.workdir)
  pool = prepare_pool(config, splits, config.workdir, mesh)
  stage = pipeline.train_rejector_stage(config, pool, splits, tmp_path, mesh)
  logits_ExJ = sweep_lib.classifier_logits(stage.model, stage.pooled_train_ExH)
  # The smoke data's rejector_train has too few articles to hold some out.
  assert "too few articles to hold some out" in report_stage.budget_calibration(
      config, pool, stage).source
  val_rows = np.arange(10, pool.num_rejector_train)
  monkeypatch.setattr(pipeline, "validation_rows", lambda _: (np.arange(10), val_rows))
  held_out = report_stage.budget_calibration(config, pool, stage)
  np.testing.assert_array_equal(held_out.logits_ExJ, logits_ExJ[val_rows])
  assert held_out.groups_E == tuple(pool.examples[i].title for i in val_rows)
  assert held_out.source.startswith(f"{len(val_rows)} held-out rejector_train questions")
  everything = report_stage.budget_calibration(
      config_lib.override(config, "eval.calibrate_on=rejector_train"), pool, stage)
  np.testing.assert_array_equal(everything.logits_ExJ, logits_ExJ)
  assert everything.source.startswith(f"all {pool.num_rejector_train} rejector_train questions")
  assert "eval.calibrate_on=rejector_train" in everything.source
  with pytest.raises(ConfigError, match="eval.calibrate_on must be one of"):
    report_stage.check_eval(config_lib.override(config, "eval.calibrate_on=test"))


def test_export_routes_with_the_agents_features_from_its_agents_or_a_file(tmp_path, smoke_run,
                                                                          capsys):
  """A rejector reading the text and small-1L's features, exported: `route` computes the features
  with the exported small-1L or reads them from a file, and either way routes the test questions
  as the trained rejector does; `agent-features` writes what precompute stored."""
  config = config_lib.override(smoke_run, "rejector.inputs=text,agents")
  outputs = pipeline.run(config_lib.override(config, "eval.beta_scales=(0.2,)"))
  export = pathlib.Path(outputs["export"])
  main = config.agents[0].name
  assert (export / "agents" / main / "span.stablehlo").is_file()
  assert not (export / "model.safetensors").exists()  # not a BERT classifier any more
  router = json.loads((export / "router.json").read_text())
  assert [s["name"] for s in router["sources"]] == ["text", "agents"]
  assert router["input_specs"]["agent_features"]["dtype"] == "float32"
  assert json.loads((export / "agents.json").read_text())["router"]["reads"] == [main]
  # the trained rejector's own test routes
  mesh = mesh_lib.make_mesh()
  splits = load_splits(config.data, config.workdir)
  pool = prepare_pool(config, splits, config.workdir, mesh)
  stage = pipeline.train_rejector_stage(config, pool, splits, pathlib.Path(config.workdir), mesh)
  test = pool.examples[pool.num_rejector_train:]
  expected = {e.id: pool.names[j] for e, j in zip(test, np.argmax(
      sweep_lib.classifier_logits(stage.model, stage.pooled_test_ExH), axis=1))}
  data = tmp_path / "test.json"
  squad.write_squad(data, test, "1.1")
  stored = pathlib.Path(config.workdir) / "store" / main / "agent_features.npz"
  for extra, said in (([], f"computed by the agents exported in {export / 'agents'}"),
                      (["--agent-features", str(stored)], f"read from {stored}")):
    out = tmp_path / "routes.json"
    assert cli.main(["route", "--export", str(export), "--data", str(data), "--out", str(out),
                     *extra]) == 0
    printed = capsys.readouterr().out
    assert f"agent features of {main}: {said}" in printed
    assert f"read on every question for their features: {main}" in printed
    assert json.loads(out.read_text()) == expected
  written = tmp_path / "features.npz"
  assert cli.main(["agent-features", "--export", str(export), "--data", str(data),
                   "--out", str(written)]) == 0
  ids = [e.id for e in test]
  for got, want in zip(feature_file.read(written, [main], ids)[main],
                       feature_file.read(stored, [main], ids)[main]):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_a_pool_made_before_a_setting_existed_matches_while_it_keeps_its_default():
  from l2d_jax.agents.pool import same_settings  # pylint: disable=import-outside-toplevel
  defaults = {"name": "main", "finetune": {"epochs": 2.0, "attention_dropout": None}}
  made = {"name": "a", "finetune": {"epochs": 1.0}}
  assert same_settings(made, {"name": "a", "finetune": {"epochs": 1.0, "attention_dropout": None}},
                       defaults)
  assert not same_settings(made, {"name": "a", "finetune": {"epochs": 1.0,
                                                            "attention_dropout": 0.0}}, defaults)
  assert not same_settings(made, {"name": "a", "finetune": {"epochs": 2.0,
                                                            "attention_dropout": None}}, defaults)
  assert not same_settings({**made, "gone": 1}, {"name": "a", "finetune": {"epochs": 1.0}},
                           defaults)


def test_an_ensemble_adds_members_from_the_next_seeds_and_routes_by_their_mean(tmp_path,
                                                                               smoke_run, capfd):
  """`train.ensemble=2` resumes a lone rejector's run as its first member, trains a second from
  the next seed, and its features, head, validation metrics and export all give the mean of the
  two members' logits."""
  config = config_lib.override(smoke_run, "rejector.inputs=agents")
  mesh = mesh_lib.make_mesh()
  splits = load_splits(config.data, config.workdir)
  pool = prepare_pool(config, splits, config.workdir, mesh)
  lone = pipeline.train_rejector_stage(config, pool, splits, tmp_path, mesh)
  logged = (tmp_path / "rejector" / "metrics.jsonl").read_text()
  capfd.readouterr()
  pair = pipeline.train_rejector_stage(config_lib.override(config, "train.ensemble=2"), pool,
                                       splits, tmp_path, mesh)
  progress = capfd.readouterr().err  # each member's bars say which member they are
  assert "rejector 1/2 features: " in progress and "rejector 1/2: " not in progress  # resumed
  assert "rejector 2/2: " in progress and "rejector 2/2 features: " in progress
  again = (tmp_path / "rejector" / "metrics.jsonl").read_text()
  assert again.startswith(logged)  # resumed at its last step: evaluated, not trained again
  assert {json.loads(line)["split"] for line in again[len(logged):].splitlines()} == {"eval"}
  assert (tmp_path / "rejector_member1" / "checkpoints").is_dir()
  assert isinstance(pair.model, ensemble.Ensemble)
  first, second = pair.model.members
  test_inputs = pair.test.inputs
  np.testing.assert_allclose(rejector_lib.predict_logits(first, test_inputs),
                             rejector_lib.predict_logits(lone.model, test_inputs), rtol=1e-6)
  seconds = rejector_lib.predict_logits(second, test_inputs)
  assert not np.allclose(seconds, rejector_lib.predict_logits(first, test_inputs), atol=1e-3)
  mean_ExJ = (rejector_lib.predict_logits(first, test_inputs) + seconds) / 2
  np.testing.assert_allclose(pair.pooled_test_ExH,
                             sweep_lib.pooled_features(pair.model, test_inputs), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(sweep_lib.classifier_logits(pair.model, pair.pooled_test_ExH),
                             mean_ExJ, rtol=1e-4, atol=1e-5)
  _, val_rows = pipeline.validation_rows(pool)
  validation = pair.train.select(val_rows)
  mean_val_ExJ = np.mean([rejector_lib.predict_logits(member, validation.inputs)
                          for member in (first, second)], axis=0)
  assert pair.train_metrics == pytest.approx(
      rejector_lib.allocation_metrics(mean_val_ExJ, validation, pair.spec))
  # The export routes by the mean logits, pays both members and meets budgets on the mean.
  export = pathlib.Path(report_stage.export(config, pool, splits, pair,
                                            tmp_path / "export")["export"])
  logits_ExJ, _ = loader.Router(export)(**test_inputs)
  np.testing.assert_allclose(logits_ExJ, mean_ExJ, rtol=1e-4, atol=1e-5)
  assert bundle.read_agents(export)[1].router_flops == pytest.approx(first.flops()
                                                                      + second.flops())
  np.testing.assert_allclose(bundle.read_calibration(export).logits_ExJ, mean_val_ExJ,
                             rtol=1e-4, atol=1e-5)
  with pytest.raises(ConfigError, match="train.ensemble .* at least 1, got 0"):
    pipeline.train_rejector_stage(config_lib.override(config, "train.ensemble=0"), pool, splits,
                                  tmp_path, mesh)


def test_the_sweep_over_an_ensemble_run_reads_its_first_members_features(tmp_path, smoke_run,
                                                                         capsys):
  """`l2d-jax sweep` in a run's workdir trains heads on the trained rejector's features: for an
  ensemble, its first member's (`rejector/`), so the rows are those of the lone rejector that
  became that member, and it says so."""
  config = config_lib.override(smoke_run, "rejector.inputs=agents")
  config = config_lib.override(config, f"pool_from={smoke_run.workdir}")
  config = config_lib.override(config, f"workdir={tmp_path / 'w'}")
  mesh = mesh_lib.make_mesh()
  splits = load_splits(config.data, config.workdir)
  pool = prepare_pool(config, splits, smoke_run.workdir, mesh)
  grid = ["beta_scale=0.1,1.0"]
  pipeline.train_rejector_stage(config, pool, splits, tmp_path / "w", mesh)
  lone = sweep_stage.run_sweep(config, grid, steps=20, out_dir=str(tmp_path / "lone"))
  pair = config_lib.override(config, "train.ensemble=2")
  pipeline.train_rejector_stage(pair, pool, splits, tmp_path / "w", mesh)
  capsys.readouterr()
  first = sweep_stage.run_sweep(pair, grid, steps=20, out_dir=str(tmp_path / "first"))
  assert (f"train.ensemble=2: the sweep reads the features of its first member "
          f"({tmp_path / 'w' / 'rejector'})") in capsys.readouterr().out
  assert sweep_lib.read_results(first) == sweep_lib.read_results(lone)
  assert len(sweep_lib.read_results(lone)) == 2
