"""Tests of consultation fees (FLOPs, latency, user numbers) and the latency measurement."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from l2d_jax.agents import fees


def test_flops_fee_is_relative_to_the_reference():
  assert fees.fee_from("flops", 2.5e9, reference_flops=10e9) == 0.25
  assert fees.fee_from("flops", 10e9, 0.3, reference_flops=10e9) == 1.0


def test_latency_fee_is_relative_to_the_reference():
  assert fees.fee_from("latency", 4e9, 0.002, reference_flops=8e9,
                       reference_latency_s=0.008) == 0.25


@pytest.mark.parametrize("spec, fee", [(0.5, 0.5), ("0.5", 0.5), ("3", 3.0), (0, 0.0)])
def test_number_fee_is_taken_as_given(spec, fee):
  assert fees.fee_from(spec, 1e9, 0.1, reference_flops=2e9, reference_latency_s=1.0) == fee


@pytest.mark.parametrize("spec, message", [
    ("gflops", "one of .* or a number, got 'gflops'"),
    (None, "or a number, got None"),
    ("-1", "finite and non-negative, got '-1'"),
    ("nan", "finite and non-negative"),
    (float("inf"), "finite and non-negative"),
])
def test_bad_specs_are_refused(spec, message):
  with pytest.raises(ValueError, match=message):
    fees.fee_from(spec, 1e9, reference_flops=1e9)


def test_measured_fee_without_a_measurement_is_refused():
  with pytest.raises(ValueError, match="needs the agent's latency per question"):
    fees.fee_from("latency", 1e9, None, reference_flops=1e9, reference_latency_s=1.0)
  with pytest.raises(ValueError, match="positive reference"):
    fees.fee_from("flops", 1e9, reference_flops=0.0)


def test_pool_fees_put_the_most_expensive_model_at_one():
  specs = {"large": "flops", "small": "flops", "fast": "latency", "llm": "0.4", "human": 3}
  flops = {"large": 12e9, "small": 3e9, "fast": 6e9}
  latency = {"large": 0.010, "small": 0.004, "fast": 0.002}
  assert fees.pool_fees(specs, flops, latency) == {
      "large": 1.0, "small": 0.25, "fast": 0.2, "llm": 0.4, "human": 3.0}


def test_pool_fees_name_the_agent_that_has_no_measurement():
  with pytest.raises(ValueError, match="agent 'llm': fee 'flops' needs the agent's flops"):
    fees.pool_fees({"expert": "flops", "llm": "flops"}, {"expert": 1e9})


def test_measure_latency_is_the_median_per_question(monkeypatch):
  calls = []
  # Clock readings around the four timed calls: they take 0.5, 0.8, 0.2 and 4.0 s.
  clock = itertools.accumulate([0.0, 0.5, 100.0, 0.8, 100.0, 0.2, 100.0, 4.0])
  monkeypatch.setattr(fees.time, "perf_counter", lambda: next(clock))

  def forward(batch):
    calls.append(batch["input_ids_FxL"].shape)
    return {"logits": batch["input_ids_FxL"] * 2}

  batch = {"input_ids_FxL": jnp.ones((4, 8), jnp.int32), "mask": np.ones((4, 8))}
  seconds = fees.measure_latency(forward, batch, repeats=4, windows_per_question=1.5)
  assert len(calls) == 5  # one warm-up, four timed
  assert seconds == pytest.approx(np.median([0.5, 0.8, 0.2, 4.0]) / 4 * 1.5)


def test_measure_latency_needs_a_repeat():
  with pytest.raises(ValueError, match="repeats must be at least 1"):
    fees.measure_latency(lambda b: b, jnp.ones(2), repeats=0)
