"""Experiment configs: `--set` overrides are typed and name what is wrong; shipped ones load."""

import dataclasses
import json
import pathlib

import pytest

from l2d_jax import config as C
from l2d_jax import report_stage


def test_overrides_reach_nested_fields_and_tuples():
  c = C.ExperimentConfig(agents=(C.AgentConfig(name="a"), C.AgentConfig(name="b")))
  c = C.override(c, "train.steps=5")
  c = C.override(c, "agents.1.num_layers=2")
  c = C.override(c, "eval.beta_scales=[0, 1]")
  c = C.override(c, "train.optim.learning_rate=1e-3")
  c = C.override(c, "costs.loss=1-em")
  assert (c.train.steps, c.agents[1].num_layers, c.agents[0].num_layers) == (5, 2, 0)
  assert c.eval.beta_scales == (0.0, 1.0)
  assert c.train.optim.learning_rate == 1e-3
  assert c.costs.loss == "1-em"
  for raw, value in (("0", 0.0), ("0.25", 0.25), ("None", None)):  # float | None
    assert C.override(c, f"rejector.attention_dropout={raw}").rejector.attention_dropout == value


@pytest.mark.parametrize("assignment, match", [
    ("train.stepz=1", "no field 'stepz'"),
    ("trian.steps=1", "ExperimentConfig has no field 'trian'"),
    ("train.steps=abc", "not a Python literal"),
    ("train.steps=1.5", "expected int"),
    ("train.steps=True", "expected int"),
    ("train.optim=3", "expected OptimConfig"),
    ("eval.beta_scales=['a']", "expected a sequence of float"),
    ("agents.3.name=x", "not an index"),
    ("train.steps.x=1", "cannot descend into a int"),
    ("train.steps", "key=value"),
    ("rejector.attention_dropout='x'", "expected float or None, got str"),
])
def test_bad_overrides_are_clear(assignment, match):
  c = C.ExperimentConfig(agents=(C.AgentConfig(),))
  with pytest.raises(C.ConfigError, match=match):
    C.override(c, assignment)


def test_load_config_from_file(tmp_path):
  path = tmp_path / "exp.py"
  path.write_text("from l2d_jax import config as C\n"
                  "def get_config():\n  return C.ExperimentConfig(name='x')\n")
  assert C.load_config(str(path)).name == "x"
  with pytest.raises(C.ConfigError, match="no experiment"):
    C.load_config("does_not_exist")
  path.write_text("def get_config(:\n  pass\n")
  with pytest.raises(C.ConfigError, match=r"exp.py:1: "):
    C.load_config(str(path))
  path.write_text("CONFIG = 1\n")
  with pytest.raises(C.ConfigError, match="defines no get_config"):
    C.load_config(str(path))
  path.write_text("def get_config():\n  return {'name': 'x'}\n")
  with pytest.raises(C.ConfigError, match="returned a dict, not an ExperimentConfig"):
    C.load_config(str(path))


@pytest.mark.parametrize("name", sorted(
    p.stem for p in (pathlib.Path(__file__).resolve().parents[1] / "experiments").glob("*.py")))
def test_shipped_experiments_load(name):
  """Every experiments/*.py builds its config (a broken one would fail hours into a GPU job)."""
  config = C.load_config(name)
  assert (config.name, config.workdir) == (name, f"runs/{name}")
  names = [agent.name for agent in config.agents]
  assert len(names) >= 2 and len(set(names)) == len(names)
  report_stage.check_rejector_fee(config.eval.rejector_fee)
  json.dumps(C.to_dict(config))  # the run writes it to config.json first thing


def test_gpu_experiments_change_only_the_experts_and_chain_v2_to_v1():
  for name in ("squad_v1_minilm", "squad_v2_minilm"):
    cpu, gpu = C.load_config(name), C.load_config(f"{name}_gpu")
    assert [a.name for a in gpu.agents] == [a.name for a in cpu.agents]
    assert (gpu.data, gpu.costs, gpu.eval) == (cpu.data, cpu.costs, cpu.eval)
    # The rejector trains in bf16 on fused attention (no attention-probability dropout).
    assert gpu.rejector == dataclasses.replace(cpu.rejector, attention_dropout=0.0)
    assert gpu.train == dataclasses.replace(cpu.train, compute_dtype="bfloat16")
    for cpu_agent, agent in zip(cpu.agents, gpu.agents):
      if agent.kind == "model":  # the GPU recipe is longer, in windows and in epochs, not other
        assert (agent.finetune.epochs, agent.finetune.max_seq_len) == (3.0, 384)
        assert (agent.finetune.compute_dtype, agent.finetune.attention_dropout) == (
            "bfloat16", 0.0)
        assert (agent.finetune.batch_size, agent.finetune.optim, agent.num_layers) == (
            cpu_agent.finetune.batch_size, cpu_agent.finetune.optim, cpu_agent.num_layers)
  v1_gpu = C.load_config("squad_v1_minilm_gpu")
  for agent in C.load_config("squad_v2_minilm_gpu").agents:
    assert agent.init_from == f"{v1_gpu.workdir}/experts/{agent.name}/checkpoints"


def test_rejector_variants_read_the_base_experiments_pool():
  for base in ("squad_v1_minilm", "squad_v2_minilm"):
    config = C.load_config(base)
    for suffix, inputs in (("agents", ("agents",)), ("text_agents", ("text", "agents"))):
      variant = C.load_config(f"{base}_{suffix}")
      assert (variant.pool_from, variant.rejector.inputs) == (config.workdir, inputs)
      assert variant.agents == config.agents and variant.costs == config.costs
      # Fresh layers over the agents' features train at their own rate, the rest as the base;
      # reading the statistics alone, five rejectors are averaged.
      assert variant.train == dataclasses.replace(config.train, head_learning_rate=1e-3,
                                                  ensemble=5 if suffix == "agents" else 1)
