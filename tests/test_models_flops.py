"""Tests of the analytic FLOPs count: exact hand counts, and agreement with XLA's cost analysis."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from l2d_jax.models import flops
from l2d_jax.models.config import EncoderConfig
from l2d_jax.models.heads import SequenceClassifier, SpanModel

# Small, but with BERT's ratios (head dim 64, feed-forward 4x hidden) so that the
# uncounted element-wise work weighs what it does in real models.
BERT = EncoderConfig("bert", vocab_size=100, hidden_size=256, num_layers=2, num_heads=4,
                     intermediate_size=1024)
DISTILBERT = EncoderConfig("distilbert", vocab_size=100, hidden_size=256, num_layers=2,
                           num_heads=4, intermediate_size=1024, type_vocab_size=0)
# One layer block shared by four layers, 32-wide embeddings projected to 128.
ALBERT = EncoderConfig("albert", vocab_size=100, hidden_size=128, num_layers=4, num_heads=2,
                       intermediate_size=512, embedding_size=32, hidden_act="gelu_new")
MINILM = EncoderConfig("bert", vocab_size=30522, hidden_size=384, num_layers=6, num_heads=12,
                       intermediate_size=1536)


def test_minilm_span_forward_matches_a_hand_count():
  length, hidden, inner = 384, 384, 1536
  per_layer = (2 * length * hidden * 3 * hidden + 2 * length * hidden * hidden
               + 2 * 2 * length * length * hidden + 2 * 2 * length * hidden * inner)
  head = 2 * length * hidden * 2
  assert flops.forward_flops(MINILM, length) == 6 * per_layer + head == 9_513_271_296
  assert flops.forward_flops(MINILM, length, batch=32) == 32 * 9_513_271_296


def test_breakdown_parts():
  parts = flops.flops_breakdown(ALBERT, 64, task="classify", num_labels=3)
  assert parts == {
      "embedding_projection": 2 * 64 * 32 * 128,
      "attention_projections": 4 * 2 * 64 * 128 * 4 * 128,
      "attention_scores": 4 * 2 * 64 * 64 * 128,
      "attention_values": 4 * 2 * 64 * 64 * 128,
      "feed_forward": 4 * 2 * 64 * 128 * 512 * 2,
      "head": 2 * 128 * 128 + 2 * 128 * 3,
  }
  assert flops.flops_breakdown(BERT, 64, task="base")["head"] == 0
  assert flops.flops_breakdown(BERT, 64)["embedding_projection"] == 0


def test_shared_layers_cost_as_much_as_distinct_ones():
  grouped = dataclasses.replace(ALBERT, num_layers=4, num_hidden_groups=2, inner_group_num=2)
  assert len(grouped.layer_schedule) == 8  # 4 layers, each a group of 2 inner layers
  single = dataclasses.replace(ALBERT, num_layers=1)
  per_layer = (flops.forward_flops(dataclasses.replace(ALBERT, num_layers=2), 128, task="base")
               - flops.forward_flops(single, 128, task="base"))
  assert (flops.forward_flops(grouped, 128, task="base")
          == flops.forward_flops(single, 128, task="base") + 7 * per_layer)


def test_truncated_expert_costs_proportionally_less():
  full = flops.flops_breakdown(MINILM, 384)
  half = flops.flops_breakdown(MINILM.truncated(3), 384)
  assert half["feed_forward"] * 2 == full["feed_forward"]
  assert half["head"] == full["head"]


def test_flops_per_question_counts_every_window():
  assert flops.flops_per_question(MINILM, 1.5, 384) == 1.5 * flops.forward_flops(MINILM, 384)
  with pytest.raises(ValueError, match="at least one window"):
    flops.flops_per_question(MINILM, 0.5, 384)


def test_bad_arguments_are_refused():
  with pytest.raises(ValueError, match="unknown task 'qa'"):
    flops.forward_flops(BERT, 64, task="qa")
  with pytest.raises(ValueError, match="seq_len must be positive"):
    flops.forward_flops(BERT, 0)


def test_xla_flops_of_a_matmul_is_two_per_multiply_add():
  a, b = jnp.ones((8, 32)), jnp.ones((32, 16))
  assert flops.xla_flops(jnp.matmul, a, b) == 2 * 8 * 32 * 16


def test_xla_flops_reads_the_list_form_of_older_jax(monkeypatch):
  monkeypatch.setattr(jax.stages.Compiled, "cost_analysis",
                      lambda self: [{"flops": 123.0, "bytes accessed": 4.0}])
  assert flops.xla_flops(jnp.sin, jnp.ones(3)) == 123.0
  monkeypatch.setattr(jax.stages.Compiled, "cost_analysis", lambda self: [])
  with pytest.raises(ValueError, match="no cost analysis"):
    flops.xla_flops(jnp.sin, jnp.ones(3))


@pytest.mark.parametrize("config, task, length", [
    (BERT, "span", 384), (BERT, "classify", 64),
    (ALBERT, "span", 128), (ALBERT, "classify", 384),
    (DISTILBERT, "span", 64), (DISTILBERT, "classify", 128),
], ids=["bert-span-384", "bert-classify-64", "albert-span-128", "albert-classify-384",
        "distilbert-span-64", "distilbert-classify-128"])
def test_analytic_count_is_within_ten_percent_of_xla(config, task, length):
  # Batch 1: on CPU, attention runs one example at a time in a loop (lax.map),
  # whose body XLA's cost analysis counts once, whatever the trip count.
  num_labels, batch = 3, 1
  # Shapes are all XLA needs: build the model abstractly rather than initialize it.
  model = nnx.eval_shape(lambda: SpanModel(config, rngs=nnx.Rngs(0)) if task == "span"
                         else SequenceClassifier(config, num_labels, rngs=nnx.Rngs(0)))
  model.eval()
  graphdef, state = nnx.split(model)

  def forward(state, input_ids, attention_mask, token_type_ids):
    return nnx.merge(graphdef, state)(input_ids, attention_mask, token_type_ids)

  ids = jax.ShapeDtypeStruct((batch, length), jnp.int32)
  measured = flops.xla_flops(forward, state, ids, ids, ids)
  analytic = flops.forward_flops(config, length, batch, task, num_labels)
  # XLA also counts the element-wise work we leave out, so it is the larger.
  assert analytic <= measured <= analytic / 0.9
