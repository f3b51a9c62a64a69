"""The rejector ensemble: its head on its features is the mean of its members' logits."""

import numpy as np
import pytest

from l2d_jax.export import stablehlo
from l2d_jax.rejector import agents, text
from l2d_jax.rejector.ensemble import Ensemble
from l2d_jax.rejector.model import Rejector
from l2d_jax.train import sweep as sweep_lib

NUM_AGENTS = 3


def _member(seed: int, train_ExF: np.ndarray, hidden: int = 4) -> Rejector:
  source = agents.AgentFeatureSource(["main"], [5], ["hidden"], train_ExF, hidden=hidden,
                                     seed=seed)
  return Rejector([source], NUM_AGENTS, seed=seed)


def test_the_ensemble_routes_by_its_members_mean_logits():
  rng = np.random.default_rng(0)
  train_ExF = rng.normal(size=(16, 5)).astype(np.float32)
  members = [_member(seed, train_ExF) for seed in (0, 1, 2)]
  for j, member in enumerate(members):  # heads of their own, not the init's near-zero ones
    member.classifier.bias[...] = np.arange(NUM_AGENTS, dtype=np.float32) * (j - 1)
  batch = {agents.INPUT: rng.normal(size=(6, 5)).astype(np.float32)}
  ensemble = Ensemble(members)
  mean_BxJ = np.mean([np.asarray(member(batch)) for member in members], axis=0)
  np.testing.assert_allclose(np.asarray(ensemble(batch)), mean_BxJ, rtol=1e-5, atol=1e-6)
  features_BxD = np.asarray(ensemble.features(batch))
  np.testing.assert_allclose(features_BxD, np.concatenate(
      [np.asarray(member.features(batch)) for member in members], axis=1), rtol=1e-6)
  assert ensemble.dim == 3 * members[0].dim == features_BxD.shape[1]
  # What the report and the beta curve read: the head on the features.
  np.testing.assert_allclose(sweep_lib.classifier_logits(ensemble, features_BxD), mean_BxJ,
                             rtol=1e-5, atol=1e-6)
  # Routing one question runs every member.
  assert ensemble.flops() == pytest.approx(sum(member.flops() for member in members))
  assert ensemble.flops() == pytest.approx(3 * members[0].flops())
  assert ensemble.records() == members[0].records()
  assert ensemble.input_specs == members[0].input_specs
  assert ensemble.paid_agents == ("main",) and ensemble.source_names == ("agents",)
  # The exported router is the same function.
  route = stablehlo.routing_function(ensemble)
  logits_BxJ, agent_B = route(batch[agents.INPUT])
  np.testing.assert_allclose(np.asarray(logits_BxJ), mean_BxJ, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(agent_B), mean_BxJ.argmax(axis=1))


def test_members_must_read_and_score_alike():
  train_ExF = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
  with pytest.raises(ValueError, match="at least two members, got 1"):
    Ensemble([_member(0, train_ExF)])
  with pytest.raises(ValueError, match="member 1 reads"):
    Ensemble([_member(0, train_ExF), Rejector([agents.AgentFeatureSource(
        ["other"], [5], ["hidden"], train_ExF, hidden=4)], NUM_AGENTS)])
  with pytest.raises(ValueError, match="into 2 agents"):
    Ensemble([_member(0, train_ExF), Rejector([agents.AgentFeatureSource(
        ["main"], [5], ["hidden"], train_ExF, hidden=4)], 2)])


def test_an_ensemble_of_text_rejectors_is_not_one_bert_classifier():
  def member(seed):
    return text.text_rejector("scratch", NUM_AGENTS, vocab_size=64, num_layers=1, hidden_size=8,
                              num_heads=2, intermediate_size=16, max_seq_len=16, seed=seed)
  assert text.hf_view(member(0)) is not None
  assert text.hf_view(Ensemble([member(0), member(1)])) is None
