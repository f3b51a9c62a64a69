"""Attention over lengths (the fused kernels' form) against the masked attention it replaced."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from l2d_jax.models import attention as attention_lib
from l2d_jax.models.config import EncoderConfig
from l2d_jax.models.heads import SequenceClassifier

LENGTHS = (11, 6, 1, 9)


def _qkv(head_dim: int, dtype=jnp.float32, length: int = 11, heads: int = 3):
  keys = jax.random.split(jax.random.key(0), 3)
  return [jax.random.normal(k, (len(LENGTHS), length, heads, head_dim)).astype(dtype)
          for k in keys]


def _masked_reference(query, key, value, lengths_B):
  """The GPU inference path before lengths: XLA's attention with a [B, 1, 1, L] boolean mask."""
  mask_Bx1x1xL = jnp.arange(query.shape[1])[None, :] < jnp.asarray(lengths_B)[:, None]
  return jax.nn.dot_product_attention(query, key, value, mask=mask_Bx1x1xL[:, None, None, :])


@pytest.mark.parametrize("head_dim", [26, 32])
def test_fused_lengths_match_the_masked_path_in_fp32(head_dim):
  query, key, value = _qkv(head_dim)
  lengths_B = jnp.asarray(LENGTHS)
  expected = _masked_reference(query, key, value, lengths_B)
  for head_multiple in (1, 8):  # 8: the zero columns added for cuDNN (26 -> 32)
    fused = attention_lib.attention_fused(query, key, value, lengths_B, "xla",
                                          head_multiple=head_multiple)
    np.testing.assert_allclose(fused, expected, atol=2e-6, rtol=2e-6)
  np.testing.assert_allclose(attention_lib.attention_per_example(query, key, value, lengths_B),
                             expected, atol=2e-6, rtol=2e-6)


def test_fused_lengths_match_the_masked_path_in_bf16_and_in_gradients():
  query, key, value = _qkv(26, jnp.bfloat16)
  lengths_B = jnp.asarray(LENGTHS)
  fused = attention_lib.attention_fused(query, key, value, lengths_B, "xla", head_multiple=8)
  expected = _masked_reference(query, key, value, lengths_B)
  assert fused.dtype == jnp.bfloat16
  np.testing.assert_allclose(fused.astype(np.float32), expected.astype(np.float32), atol=3e-2)
  weights = jax.random.normal(jax.random.key(5), fused.shape)
  grad = lambda f: jax.grad(lambda q, k, v: jnp.sum(f(q, k, v).astype(jnp.float32) * weights),
                            argnums=(0, 1, 2))
  q32, k32, v32 = (x.astype(jnp.float32) for x in (query, key, value))
  ours = grad(lambda q, k, v: attention_lib.attention_fused(q, k, v, lengths_B, "xla", 8))(
      q32, k32, v32)
  theirs = grad(lambda q, k, v: _masked_reference(q, k, v, lengths_B))(q32, k32, v32)
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_padding_never_leaks_into_real_positions():
  query, key, value = _qkv(32)
  lengths_B = jnp.asarray(LENGTHS)
  garbage = [x.at[:, 6:].set(1e3) for x in (query, key, value)]
  clean = attention_lib.attention_fused(query, key, value, lengths_B)
  noisy = attention_lib.attention_fused(*garbage, lengths_B)
  np.testing.assert_allclose(noisy[1, :6], clean[1, :6], atol=1e-6)  # length 6: keys 6.. ignored


@pytest.mark.parametrize("backend,kind,dtype,head_dim,dropout,portable,expected", [
    ("cpu", "cpu", jnp.bfloat16, 32, False, False, "per_example"),
    ("cpu", "cpu", jnp.float32, 32, True, False, "per_example"),
    ("gpu", "NVIDIA H200", jnp.bfloat16, 26, False, False, "cudnn"),
    ("gpu", "NVIDIA H200", jnp.float16, 64, False, False, "cudnn"),
    ("gpu", "NVIDIA H200", jnp.float32, 32, False, False, "xla"),     # cuDNN flash: 16-bit only
    ("gpu", "NVIDIA H200", jnp.bfloat16, 32, True, False, "explicit"),  # dropout on probabilities
    ("gpu", "NVIDIA H200", jnp.bfloat16, 160, False, False, "xla"),
    ("gpu", "AMD Instinct MI300X", jnp.bfloat16, 32, False, False, "xla"),
    ("tpu", "TPU v5p", jnp.bfloat16, 64, False, False, "xla"),
    ("gpu", "NVIDIA H200", jnp.bfloat16, 32, False, True, "xla"),      # multi-platform export
    ("cpu", "cpu", jnp.float32, 32, True, True, "explicit"),
])
def test_kernel_choice(backend, kind, dtype, head_dim, dropout, portable, expected):
  assert attention_lib.choose_kernel(backend=backend, device_kind=kind, dtype=dtype,
                                     head_dim=head_dim, dropout=dropout,
                                     portable_only=portable) == expected


def test_a_refused_cudnn_call_falls_back_to_xla(monkeypatch, caplog):
  """cuDNN refuses some calls only while tracing (here: no cuDNN at all): XLA serves them."""
  monkeypatch.setattr(attention_lib, "choose_kernel", lambda **_: "cudnn")
  query, key, value = _qkv(26)
  lengths_B = jnp.asarray(LENGTHS)
  with caplog.at_level("WARNING"):
    context = jax.jit(attention_lib.attend)(query, key, value, lengths_B)
  np.testing.assert_allclose(context, _masked_reference(query, key, value, lengths_B), atol=2e-6)
  assert "cuDNN flash attention refused" in caplog.text


def test_portable_context_is_scoped():
  with attention_lib.portable():
    assert attention_lib._PORTABLE.get()
  assert not attention_lib._PORTABLE.get()


def _scatter_adds(jaxpr) -> list:
  """The scatter-add equations of a jaxpr, nested jaxprs included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "scatter-add":
      found.append(eqn)
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found += _scatter_adds(sub)
  return found


def test_bf16_training_scatters_only_word_gradients_and_only_in_fp32():
  """The bf16 backward pass has one scatter-add (word embeddings), in fp32.

  Casting whole tables to bf16 before the lookup made every embedding gradient
  a bf16 scatter-add, and positions and token types scatter B * L rows onto a
  few: 5x slower training than fp32 on an H200.
  """
  config = EncoderConfig(family="bert", vocab_size=50, hidden_size=16, num_layers=1,
                         num_heads=2, intermediate_size=32, dtype="bfloat16")
  graphdef, params, rest = nnx.split(SequenceClassifier(config, 3, rngs=nnx.Rngs(0)),
                                     nnx.Param, ...)
  ids_BxL = jnp.ones((2, 7), jnp.int32)

  def loss(params):
    model = nnx.merge(graphdef, params, rest)
    return jnp.sum(model(ids_BxL, jnp.ones_like(ids_BxL), ids_BxL % 2, deterministic=True))

  scatters = _scatter_adds(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)
  assert [eqn.invars[0].aval.dtype for eqn in scatters] == [jnp.float32]
  assert scatters[0].invars[0].aval.shape == (50, 16)


def test_attention_dropout_overrides_reach_experts_and_the_rejector():
  """0 (fused attention on GPUs) or any rate from the config; None keeps BERT's 0.1."""
  from l2d_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  from l2d_jax.agents.pool import build_expert  # pylint: disable=import-outside-toplevel
  from l2d_jax.rejector.text import text_source  # pylint: disable=import-outside-toplevel
  sizes = dict(vocab_size=50, num_layers=1, hidden_size=16, num_heads=2, intermediate_size=32,
               max_seq_len=16)
  for rate, expected in ((None, 0.1), (0.0, 0.0), (0.25, 0.25)):
    source = nnx.eval_shape(lambda rate=rate: text_source("scratch", attention_dropout=rate,
                                                          **sizes))
    assert source.config.attention_dropout == expected
    agent = config_lib.AgentConfig(model="scratch", num_layers=1, scratch_hidden=16,
                                   finetune=config_lib.FinetuneConfig(attention_dropout=rate))
    _, expert_config = build_expert(agent, vocab_size=50)
    assert expert_config.attention_dropout == expected
  pretrained = text_source("all-MiniLM-L6-v2", **{**sizes, "num_layers": 1},
                           attention_dropout=0.0)  # a checkpoint's 0.1, overridden
  assert pretrained.config.attention_dropout == 0.0 and pretrained.config.hidden_size == 384
