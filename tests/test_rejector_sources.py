"""Rejector feature sources: the agent features' standardisation by hand, config checks."""

import jax
import numpy as np
import pytest
from flax import nnx

from l2d_jax import config as config_lib
from l2d_jax.agents import store
from l2d_jax.rejector import agents, sources, text
from l2d_jax.rejector.model import Rejector


def test_agent_features_are_standardised_on_the_training_rows_then_clipped():
  train = np.array([[0.0, 1.0, 5.0], [2.0, 1.0, 7.0], [4.0, 1.0, 9.0]], np.float32)
  source = agents.AgentFeatureSource(["main"], [3], ["hidden"], train, hidden=4, seed=0)
  batch = np.array([[2.0, 3.0, 7.0], [100.0, 1.0, 5.0]], np.float32)
  std = np.sqrt(8 / 3)  # of 0, 2, 4 and of 5, 7, 9; the constant column keeps its scale
  z = np.array([[0.0, 2.0, 0.0], [min(98.0 / std, agents.Z_CLIP), 0.0, -2.0 / std]])
  out = np.asarray(source({agents.INPUT: batch}))
  assert out.shape == (2, source.dim) and source.dim == 3 + 4
  np.testing.assert_allclose(out[:, :3], z, rtol=1e-5, atol=1e-6)
  kernel, bias = np.asarray(source.dense.kernel[...]), np.asarray(source.dense.bias[...])
  np.testing.assert_allclose(out[:, 3:], np.asarray(jax.nn.gelu(z @ kernel + bias)),
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="not finite"):
    agents.AgentFeatureSource(["main"], [3], ["hidden"], np.full((2, 3), np.nan), hidden=4)


def test_the_parts_read_of_each_agent_set_the_columns_and_the_export_record():
  s = len(store.STATISTICS)
  stats = [np.full((2, s), 1.0), np.full((2, s), 3.0)]
  hidden = [np.full((2, 4), 2.0), np.full((2, 5), 4.0)]
  per_agent = list(zip(stats, hidden))
  np.testing.assert_array_equal(agents.feature_matrix(per_agent)[0],
                                [1.0] * s + [2.0] * 4 + [3.0] * s + [4.0] * 5)
  np.testing.assert_array_equal(agents.feature_matrix(per_agent, ["statistics"])[0],
                                [1.0] * s + [3.0] * s)
  np.testing.assert_array_equal(agents.feature_matrix(per_agent, ["hidden"])[0],
                                [2.0] * 4 + [4.0] * 5)
  train = np.random.default_rng(0).normal(size=(8, 2 * s))
  source = agents.AgentFeatureSource(["a", "b"], [4, 5], ["statistics"], train, hidden=3)
  assert source.input_specs == {"agent_features": ("float32", (2 * s,))}
  assert source.dim == 2 * s + 3
  assert source.record() == {"input": "agent_features", "parts": ["statistics"], "agents": [
      {"name": "a", "statistics": list(store.STATISTICS), "hidden_size": 0},
      {"name": "b", "statistics": list(store.STATISTICS), "hidden_size": 0}]}


def _config(**rejector):
  config = config_lib.ExperimentConfig(agents=(
      config_lib.AgentConfig(name="small", kind="model"),
      config_lib.AgentConfig(name="big", kind="model"),
      config_lib.AgentConfig(name="human", kind="human")))
  for key, value in rejector.items():
    config = config_lib.override(config, f"rejector.{key}={value}")
  return config


def test_inputs_and_feature_agents_are_checked_before_anything_runs():
  sources.check(_config(inputs="text,agents"))
  assert _config(inputs="text,agents").rejector.inputs == ("text", "agents")
  assert agents.feature_agents(_config(inputs="agents")) == ("small",)  # agent 0 by default
  assert agents.feature_agents(_config(inputs="agents", feature_agents="big,small")) == (
      "big", "small")
  with pytest.raises(ValueError, match=r"among \['agents', 'text'\], got \['text', 'logits'\]"):
    sources.check(_config(inputs="text,logits"))
  with pytest.raises(ValueError, match="distinct"):
    sources.check(_config(inputs="text,text"))
  with pytest.raises(ValueError, match="'human' is not a model agent"):
    sources.check(_config(inputs="agents", feature_agents="human"))
  sources.check(_config(inputs="text", feature_agents="human"))  # not read: not checked
  sources.check(_config(inputs="agents", agent_parts="statistics"))
  with pytest.raises(ValueError, match=r"among \['statistics', 'hidden'\], got \['logits'\]"):
    sources.check(_config(inputs="agents", agent_parts="logits"))


def test_learning_rate_groups_put_the_text_encoder_apart_from_fresh_layers():
  encoder = text.text_rejector("scratch", 2, vocab_size=64, num_layers=1, hidden_size=8,
                               num_heads=2, intermediate_size=16, max_seq_len=16).sources[0]
  features = agents.AgentFeatureSource(["main"], [3], ["hidden"], np.eye(3), hidden=4)
  model = Rejector([encoder, features], 2)
  params = nnx.split(model, nnx.Param, ...)[1]
  groups = model.learning_rate_groups(params)
  by_path = {jax.tree_util.keystr(path[:2]): group
             for path, group in jax.tree_util.tree_flatten_with_path(groups)[0]}
  assert by_path == {"['classifier']['bias']": "head", "['classifier']['kernel']": "head",
                     "['sources'][0]": "encoder", "['sources'][1]": "head"}
