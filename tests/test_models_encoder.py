"""Tests of EncoderConfig, the NNX encoder and its heads (PyTorch parity: test_models_hf_import)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from flax import nnx

from l2d_jax.models import config as config_lib
from l2d_jax.models import attention as attention_lib
from l2d_jax.models.config import EncoderConfig
from l2d_jax.models.encoder import Attention, Encoder, position_ids
from l2d_jax.models.heads import SequenceClassifier

TINY = dict(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24,
            max_position_embeddings=32)
HF_TINY = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=24, max_position_embeddings=32)


# Tests run the models jitted: one compilation is much cheaper than eager op-by-op ones.
_apply = nnx.jit(lambda model, *inputs: model(*inputs))


def _num_params(model: nnx.Module) -> int:
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _ids(length: int = 7) -> jax.Array:
  """A batch of two random token sequences."""
  return jnp.asarray(np.random.RandomState(0).randint(3, 50, (2, length)))


def test_from_hf_config_bert():
  config = EncoderConfig.from_hf_config(transformers.BertConfig(**HF_TINY).to_dict())
  assert config == EncoderConfig(family="bert", **TINY, type_vocab_size=2, hidden_act="gelu",
                                 pad_token_id=0, classifier_dropout=0.1)
  assert not config.has_embedding_projection
  assert config.layer_schedule == (0, 1)


def test_from_hf_config_roberta_positions_count_from_padding_plus_one():
  config = EncoderConfig.from_hf_config(
      transformers.RobertaConfig(**HF_TINY, type_vocab_size=1).to_dict())
  assert (config.family, config.pad_token_id, config.position_offset) == ("roberta", 1, 2)
  assert config.type_vocab_size == 1


def test_from_hf_config_distilbert_has_no_token_types():
  hf = transformers.DistilBertConfig(vocab_size=50, dim=16, n_layers=3, n_heads=2,
                                     hidden_dim=24, max_position_embeddings=32).to_dict()
  config = EncoderConfig.from_hf_config(hf)
  assert (config.hidden_size, config.num_layers, config.num_heads, config.intermediate_size) == (
      16, 3, 2, 24)
  assert config.type_vocab_size == 0
  assert config.classifier_dropout == 0.2  # seq_classif_dropout
  assert config.pooler_activation == "relu"


def test_from_hf_config_albert_factorized_and_grouped():
  hf = transformers.AlbertConfig(**{**HF_TINY, "num_hidden_layers": 4}, embedding_size=8,
                                 num_hidden_groups=2, inner_group_num=2).to_dict()
  config = EncoderConfig.from_hf_config(hf)
  assert (config.embedding_dim, config.hidden_act) == (8, "gelu_new")
  assert config.has_embedding_projection
  assert config.num_layer_blocks == 4
  # AlbertTransformer: layer i uses group i // (layers / groups), each group runs its 2 layers.
  assert config.layer_schedule == (0, 1, 0, 1, 2, 3, 2, 3)


def test_from_hf_config_electra_projects_only_when_factorized():
  factorized = EncoderConfig.from_hf_config(
      transformers.ElectraConfig(**HF_TINY, embedding_size=8).to_dict())
  same = EncoderConfig.from_hf_config(
      transformers.ElectraConfig(**HF_TINY, embedding_size=16).to_dict())
  assert factorized.has_embedding_projection and factorized.pooler_activation == "gelu"
  assert not same.has_embedding_projection and same.embedding_size is None


def test_from_hf_config_overrides():
  config = EncoderConfig.from_hf_config(transformers.BertConfig(**HF_TINY).to_dict(),
                                        dtype="bfloat16")
  assert config.compute_dtype == jnp.bfloat16 and config.parameter_dtype == jnp.float32


def test_from_hf_config_rejects_unsupported():
  with pytest.raises(ValueError, match=r"unsupported architecture GPT2LMHeadModel \(model_type "
                     r"'gpt2'\); supported model types: albert, bert, distilbert, electra, "
                     r"roberta"):
    EncoderConfig.from_hf_config({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
  relative = transformers.BertConfig(**HF_TINY, position_embedding_type="relative_key").to_dict()
  with pytest.raises(ValueError, match="position_embedding_type 'relative_key'"):
    EncoderConfig.from_hf_config(relative)
  with pytest.raises(ValueError, match="unsupported hidden_act 'mish'"):
    EncoderConfig.from_hf_config(transformers.BertConfig(**HF_TINY, hidden_act="mish").to_dict())


def test_gelu_is_the_exact_gelu():
  # Written as BERT and PyTorch write it, 1 + erf loses the far negative tail's
  # relative digits (outputs below ~1e-7 in size), as theirs does.
  x = jnp.concatenate([jnp.linspace(-12.0, 12.0, 4001), jnp.array([-1e4, 1e4, 0.0])])
  np.testing.assert_allclose(config_lib.gelu_erf(x), jax.nn.gelu(x, approximate=False),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(jax.vmap(jax.grad(config_lib.gelu_erf))(x),
                             jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=False)))(x),
                             rtol=1e-5, atol=1e-6)
  assert config_lib.gelu_erf(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_config_validation():
  with pytest.raises(ValueError, match="not a multiple of num_heads 3"):
    EncoderConfig(family="bert", **{**TINY, "num_heads": 3})
  with pytest.raises(ValueError, match="factorized embeddings .* not 'bert'"):
    EncoderConfig(family="bert", **TINY, embedding_size=8)
  with pytest.raises(ValueError, match="ALBERT switches"):
    EncoderConfig(family="roberta", **TINY, num_hidden_groups=2)
  with pytest.raises(ValueError, match="dtype must be one of"):
    EncoderConfig(family="bert", **TINY, dtype="float16")


def test_to_hf_config_round_trip():
  config = EncoderConfig(family="bert", **TINY, hidden_dropout=0.2, layer_norm_eps=1e-7)
  hf = config.to_hf_config()
  assert EncoderConfig.from_hf_config(hf) == config
  bert = transformers.BertConfig(**hf)
  assert (bert.num_hidden_layers, bert.hidden_dropout_prob, bert.layer_norm_eps) == (2, 0.2, 1e-7)
  with pytest.raises(ValueError, match="BERT configs only, not 'albert'"):
    EncoderConfig(family="albert", **TINY).to_hf_config()


def test_truncated():
  config = EncoderConfig(family="bert", **{**TINY, "num_layers": 6})
  assert config.truncated(2) == dataclasses.replace(config, num_layers=2)
  for bad in (0, 7):
    with pytest.raises(ValueError, match=f"cannot keep {bad} layers of a 6-layer encoder"):
      config.truncated(bad)


def test_position_ids():
  ids = jnp.asarray([[0, 5, 6, 1, 1], [0, 7, 1, 1, 1]])
  np.testing.assert_array_equal(position_ids(ids, 0, 1), [[0, 1, 2, 3, 4]] * 2)
  # RoBERTa (pad 1, offset 2): tokens count from 2, padding sits at 1.
  np.testing.assert_array_equal(position_ids(ids, 2, 1), [[2, 3, 4, 1, 1], [2, 3, 1, 1, 1]])


def test_padding_does_not_leak():
  """Hidden states of real tokens ignore whatever sits in the masked positions."""
  model = Encoder(EncoderConfig(family="bert", **TINY), rngs=nnx.Rngs(0))
  model.eval()
  mask = jnp.asarray([[1] * 7, [1] * 5 + [0] * 2])
  padded_a = _ids()
  padded_b = padded_a.at[1, 5:].set(jnp.asarray([11, 12]))
  hidden_a = _apply(model, padded_a, mask)
  np.testing.assert_allclose(hidden_a[1, :5], _apply(model, padded_b, mask)[1, :5], atol=1e-6)
  unmasked = _apply(model, padded_a, jnp.ones_like(mask))
  np.testing.assert_array_equal(hidden_a[0], unmasked[0])
  assert np.abs(np.asarray(hidden_a[1, :5] - unmasked[1, :5])).max() > 1e-3


def test_albert_shares_layers_across_depth():
  shallow = EncoderConfig(family="albert", **TINY, embedding_size=8)
  deep = dataclasses.replace(shallow, num_layers=6)
  shallow_model, deep_model = (nnx.eval_shape(lambda c=c: Encoder(c, rngs=nnx.Rngs(0)))
                                for c in (shallow, deep))
  assert _num_params(shallow_model) == _num_params(deep_model)
  assert len(deep_model.layers) == 1 and deep.layer_schedule == (0,) * 6


def test_sequence_length_beyond_positions_is_an_error():
  model = Encoder(EncoderConfig(family="roberta", **{**TINY, "type_vocab_size": 1},
                                pad_token_id=1, position_offset=2), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="sequence length 31 .*exceeds max_position_embeddings 32"):
    model(_ids(length=31))


def test_dropout_is_seeded_and_off_when_deterministic():
  config = EncoderConfig(family="bert", **{**TINY, "num_layers": 1}, hidden_dropout=0.5,
                         attention_dropout=0.5)
  ids, mask = _ids(), jnp.ones((2, 7), jnp.int32)
  first = Encoder(config, rngs=nnx.Rngs(3))
  second = Encoder(config, rngs=nnx.Rngs(3))
  train_a = _apply(first, ids, mask)
  np.testing.assert_array_equal(train_a, _apply(second, ids, mask))  # same seed, same masks
  assert np.abs(np.asarray(train_a - _apply(first, ids, mask))).max() > 1e-3  # new masks
  deterministic = nnx.jit(lambda model, *inputs: model(*inputs, deterministic=True))
  eval_a = deterministic(first, ids, mask)
  np.testing.assert_array_equal(eval_a, deterministic(second, ids, mask))
  assert np.abs(np.asarray(train_a - eval_a)).max() > 1e-3


def test_attention_dropout_path_matches_inference_path():
  """Training spells attention out (to drop probabilities); with ~no dropout it is the same."""
  config = EncoderConfig(family="bert", **TINY, attention_dropout=1e-9)
  attention = Attention(config, rngs=nnx.Rngs(0))
  x_BxLxH = jax.random.normal(jax.random.key(1), (2, 7, 16))
  lengths_B = jnp.asarray([7, 4])
  training = _apply(attention, x_BxLxH, lengths_B)
  attention.eval()
  np.testing.assert_allclose(training, _apply(attention, x_BxLxH, lengths_B), atol=1e-5)


def test_bf16_compute_stays_close_to_fp32():
  config = EncoderConfig(family="bert", **TINY, initializer_range=0.2)
  fp32 = SequenceClassifier(config, 3, rngs=nnx.Rngs(0))
  bf16 = SequenceClassifier(dataclasses.replace(config, dtype="bfloat16"), 3, rngs=nnx.Rngs(0))
  fp32.eval(), bf16.eval()
  ids, mask = _ids(), jnp.ones((2, 7), jnp.int32)
  assert jax.tree.leaves(nnx.state(bf16, nnx.Param))[0].dtype == jnp.float32
  assert nnx.eval_shape(lambda m: m(ids, mask), bf16.encoder).dtype == jnp.bfloat16
  logits_fp32, logits_bf16 = _apply(fp32, ids, mask), _apply(bf16, ids, mask)
  assert logits_bf16.dtype == jnp.float32 and logits_bf16.shape == (2, 3)
  np.testing.assert_allclose(logits_bf16, logits_fp32, atol=0.1)
  assert np.abs(np.asarray(logits_bf16 - logits_fp32)).max() > 0  # really computed in bf16


def test_per_example_attention_drops_what_batched_attention_drops():
  """The CPU path (one example at a time) and the batched path share one dropout mask."""
  keys = jax.random.split(jax.random.key(2), 3)
  query, key, value = (jax.random.normal(k, (3, 9, 2, 4)) for k in keys)
  lengths_B = jnp.asarray([9, 5, 2])
  dropout = (jnp.uint32(12345), 0.3)
  batched = attention_lib.attention_explicit(query, key, value, lengths_B, dropout)
  per_example = attention_lib.attention_per_example(query, key, value, lengths_B, dropout)
  np.testing.assert_allclose(per_example, batched, atol=1e-5)
  no_dropout = attention_lib.attention_per_example(query, key, value, lengths_B)
  assert np.abs(np.asarray(per_example - no_dropout)).max() > 1e-2
  # Its backward recomputes each example's scores (jax.checkpoint): same gradients.
  weights = jax.random.normal(jax.random.key(3), batched.shape)
  grads = [jax.grad(lambda q, k, v, f=f: jnp.sum(f(q, k, v, lengths_B, dropout) * weights),
                    argnums=(0, 1, 2))(query, key, value)
           for f in (attention_lib.attention_explicit, attention_lib.attention_per_example)]
  for batched_grad, per_example_grad in zip(*grads):
    np.testing.assert_allclose(per_example_grad, batched_grad, atol=1e-5)
