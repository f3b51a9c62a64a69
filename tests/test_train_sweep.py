"""Vmapped sweeps: each configuration equals its own solo run; results resume; heads learn."""

import numpy as np
import pytest

from l2d_jax.train import rejector as R
from l2d_jax.train import sweep as S

import rejector_run


def _toy(num=200, hidden=8, seed=0):
  """Pooled features whose largest of the first 3 coordinates says which agent is right."""
  rng = np.random.default_rng(seed)
  pooled = rng.normal(size=(num, hidden)).astype(np.float32)
  right = np.argmax(pooled[:, :3], axis=1)
  f1 = np.eye(3, dtype=np.float32)[right] * 0.9 + 0.05
  scores = {"em": f1, "f1": f1, "span_nll": 1 - f1}
  return pooled, R.RejectorData({}, scores, [str(i) for i in range(num)])


def test_batch_rows_are_a_fresh_permutation_each_epoch():
  rows = S.batch_rows(10, steps=7, batch_size=4, seed=3)  # 28 rows: epochs 1 and 2, 8 of 3
  assert rows.shape == (7, 4) and rows.dtype == np.int32
  flat = rows.reshape(-1)
  assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
  assert len(set(flat[20:])) == 8
  assert not np.array_equal(flat[:10], flat[10:20])
  np.testing.assert_array_equal(S.batch_rows(10, 7, 4, seed=3), rows)
  assert not np.array_equal(S.batch_rows(10, 7, 4, seed=4), rows)
  assert S.batch_rows(10, 0, 4, seed=3).shape == (0, 4)


def test_vmapped_configurations_equal_solo_runs():
  pooled, data = _toy()
  fees = np.array([0.0, 0.1, 0.2], np.float32)
  points = S.grid(beta_scale=[0.0, 1.0], learning_rate=[1e-2, 3e-2], u=[1.0, 0.5], seed=[0, 1])
  assert len(points) == 16
  settings = S.HeadTraining(steps=40, batch_size=64)
  kernels, biases = S.train_heads(pooled, data.scores, fees, "1-f1", points, settings)
  for k in (0, 5, 10, 15):
    solo_kernel, solo_bias = S.train_heads(pooled, data.scores, fees, "1-f1", [points[k]], settings)
    np.testing.assert_allclose(kernels[k], solo_kernel[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(biases[k], solo_bias[0], rtol=1e-4, atol=1e-6)
  assert not np.allclose(kernels[0], kernels[1])  # seeds differ


def test_trained_heads_approach_the_oracle():
  pooled, data = _toy()
  fees = np.zeros(3, np.float32)
  points = S.grid(learning_rate=[5e-2], u=[1.0, 0.0, 2.0])
  kernels, biases = S.train_heads(pooled, data.scores, fees, "1-f1", points,
                                  S.HeadTraining(steps=300, batch_size=100))
  rows = S.evaluate_heads(pooled, data, fees, "1-f1", points, kernels, biases)
  for row in rows:
    assert row["deferral_loss"] < row["oracle_loss"] + 0.1, row
    assert row["deferral_loss"] < 0.95 - 0.3  # far better than any single agent (0.633)


def test_results_files_and_rerun_skips_finished(tmp_path):
  points = S.grid(beta_scale=[0.0, 1.0], seed=[0, 1])
  rows = [{"key": p.key, "beta_scale": p.beta_scale, "deferral_loss": 0.5} for p in points[:3]]
  S.write_results(rows[:2], tmp_path)
  S.write_results(rows[2:], tmp_path)
  assert [r["key"] for r in S.read_results(tmp_path)] == [p.key for p in points[:3]]
  assert S.pending(points, tmp_path) == [points[3]]
  markdown = (tmp_path / "results.md").read_text().splitlines()
  assert markdown[0] == "| key | beta_scale | deferral_loss |" and len(markdown) == 5


def test_unknown_axis_is_named():
  with pytest.raises(ValueError, match="unknown sweep axes \\['betta'\\]"):
    S.grid(betta=[1.0])


def test_pooled_features_are_the_classifier_inputs():
  data = rejector_run.toy_data()
  model = rejector_run.tiny_rejector(seed=1)
  pooled = S.pooled_features(model, data.inputs, batch_size=16)
  logits = R.predict_logits(model, data.inputs, batch_size=16)
  head = model.classifier
  np.testing.assert_allclose(pooled @ np.asarray(head.kernel[...]) + np.asarray(head.bias[...]),
                             logits, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(S.classifier_logits(model, pooled), logits, rtol=1e-4, atol=1e-5)
