"""experiments/analysis/routing_signal.py: the routing gain and the ridge probe, by hand."""

import importlib.util
import pathlib

import numpy as np

_PATH = pathlib.Path(__file__).resolve().parents[1] / "experiments/analysis/routing_signal.py"
_SPEC = importlib.util.spec_from_file_location("routing_signal", _PATH)
routing_signal = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(routing_signal)


def test_gains_against_random_at_the_same_share():
  # Four questions; agent b is cheaper on questions 1 and 3 (score = a's cost - b's).
  cost_Ex2 = np.array([[0.2, 0.6], [0.9, 0.3], [0.4, 0.5], [1.0, 0.1]])
  f1_Ex2 = 1.0 - cost_Ex2
  g = routing_signal.gains(cost_Ex2[:, 0] - cost_Ex2[:, 1], cost_Ex2, f1_Ex2, share=0.5)
  # Routed: 0.2, 0.3, 0.4, 0.1 (mean 0.25); random at share 0.5: the pair means (mean 0.5).
  diff_E = np.array([0.2 - 0.4, 0.3 - 0.6, 0.4 - 0.45, 0.1 - 0.55])
  np.testing.assert_allclose(g["cost"], (diff_E.mean(), diff_E.std(ddof=1) / 2))
  np.testing.assert_allclose(g["f1"], (-diff_E.mean(), diff_E.std(ddof=1) / 2))
  assert g["share"] == 0.5


def test_ridge_recovers_a_linear_difference_out_of_sample():
  rng = np.random.default_rng(0)
  x_ExH = rng.normal(size=(400, 5))
  y_E = x_ExH @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.7
  groups_E = np.arange(400) // 10  # 40 "articles" of 10 questions
  predicted_E, penalty = routing_signal.ridge_predictions(x_ExH, y_E, groups_E, num_train=300)
  assert penalty == routing_signal.PENALTIES[0]  # noise-free: the least penalty wins
  np.testing.assert_allclose(predicted_E[300:], y_E[300:], atol=0.05)


def test_ridge_penalty_is_chosen_on_held_out_articles():
  """Pure noise: a fit that saw its held-out rows would prefer the least penalty."""
  rng = np.random.default_rng(1)
  x_ExH = rng.normal(size=(300, 40))
  y_E = rng.normal(size=300)
  _, penalty = routing_signal.ridge_predictions(x_ExH, y_E, np.arange(300) // 6, num_train=300)
  assert penalty >= 1e3
