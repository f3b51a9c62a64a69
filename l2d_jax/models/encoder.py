"""One Flax NNX transformer encoder for the BERT family, and BERT's [CLS] pooler.

BERT, RoBERTa, DistilBERT, ALBERT and ELECTRA are the same post-LayerNorm encoder
with different switches (see `EncoderConfig`): token-type embeddings or none,
RoBERTa's padding-aware position ids, factorized embeddings projected to the hidden
size, and ALBERT's few layer blocks reused across depth. Parameter names follow the
roles, not any one family's checkpoint; `hf_import` maps checkpoints onto them.

Query, key and value share one fused projection (`qkv`): one [H, 3H] matmul beat
three [H, H] ones by about 8% on the attention block at MiniLM's sizes on CPU.
Parameters are `param_dtype` (fp32); compute runs in `dtype` (fp32 or bf16) with
the attention softmax and LayerNorm statistics in fp32.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from l2d_jax.models.config import ACTIVATIONS, EncoderConfig
from l2d_jax.models.dropout import Dropout, apply_mask, check_stream, draw_seed, keep_mask


def dense(config: EncoderConfig, in_features: int, out_features: int, *,
          rngs: nnx.Rngs) -> nnx.Linear:
  """A Linear layer in the config's dtypes, initialized like Hugging Face's BERT."""
  return nnx.Linear(in_features, out_features, dtype=config.compute_dtype,
                    param_dtype=config.parameter_dtype,
                    kernel_init=nnx.initializers.normal(config.initializer_range), rngs=rngs)


def _layer_norm(config: EncoderConfig, features: int, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(features, epsilon=config.layer_norm_eps, dtype=config.compute_dtype,
                       param_dtype=config.parameter_dtype, rngs=rngs)


def _embed(config: EncoderConfig, rows: int, *, rngs: nnx.Rngs) -> nnx.Embed:
  return nnx.Embed(rows, config.embedding_dim, dtype=config.compute_dtype,
                   param_dtype=config.parameter_dtype,
                   embedding_init=nnx.initializers.normal(config.initializer_range), rngs=rngs)


def position_ids(input_ids_BxL: jax.Array, position_offset: int, pad_token_id: int) -> jax.Array:
  """Position of each token: 0..L-1, or RoBERTa's ids when `position_offset` > 0.

  RoBERTa numbers non-padding tokens from `position_offset` and gives padding
  `position_offset - 1`, so a left-padded sequence keeps its positions.
  """
  if position_offset == 0:
    return jnp.broadcast_to(jnp.arange(input_ids_BxL.shape[1]), input_ids_BxL.shape)
  is_token_BxL = (input_ids_BxL != pad_token_id).astype(jnp.int32)
  return jnp.cumsum(is_token_BxL, axis=1) * is_token_BxL + (position_offset - 1)


class Embeddings(nnx.Module):
  """Word + position (+ token type) embeddings, LayerNorm and dropout."""

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.position_offset = config.position_offset
    self.pad_token_id = config.pad_token_id
    self.max_positions = config.max_position_embeddings
    self.word = _embed(config, config.vocab_size, rngs=rngs)
    self.position = _embed(config, config.max_position_embeddings, rngs=rngs)
    self.token_type = (_embed(config, config.type_vocab_size, rngs=rngs)
                       if config.type_vocab_size else None)
    self.norm = _layer_norm(config, config.embedding_dim, rngs=rngs)
    self.dropout = Dropout(config.hidden_dropout, rngs=rngs)

  def __call__(self, input_ids_BxL: jax.Array, token_type_ids_BxL: jax.Array | None, *,
               deterministic: bool | None = None) -> jax.Array:
    """Embeds `input_ids_BxL` to [B, L, E]; token types are ignored without a table."""
    length = input_ids_BxL.shape[1]
    if length + self.position_offset > self.max_positions:
      raise ValueError(f"sequence length {length} (position offset {self.position_offset}) "
                       f"exceeds max_position_embeddings {self.max_positions}")
    positions_BxL = position_ids(input_ids_BxL, self.position_offset, self.pad_token_id)
    embedded_BxLxE = self.word(input_ids_BxL) + self.position(positions_BxL)
    if self.token_type is not None:
      if token_type_ids_BxL is None:
        token_type_ids_BxL = jnp.zeros_like(input_ids_BxL)
      embedded_BxLxE = embedded_BxLxE + self.token_type(token_type_ids_BxL)
    return self.dropout(self.norm(embedded_BxLxE), deterministic=deterministic)


class Attention(nnx.Module):
  """Multi-head self-attention with a fused query/key/value projection."""

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.num_heads = config.num_heads
    self.head_dim = config.head_dim
    self.qkv = dense(config, config.hidden_size, 3 * config.hidden_size, rngs=rngs)
    self.out = dense(config, config.hidden_size, config.hidden_size, rngs=rngs)
    self.dropout = Dropout(config.attention_dropout, rngs=rngs)

  def __call__(self, x_BxLxH: jax.Array, mask_Bx1x1xL: jax.Array, *,
               deterministic: bool | None = None) -> jax.Array:
    """Attends every position to the unmasked ones (mask True = attend).

    On CPU this is `_attention_per_example`; elsewhere `jax.nn.dot_product_attention`
    (cuDNN's fused kernel on GPU where it applies) for inference and
    `_attention_batched` when training with attention dropout, which needs the
    probabilities explicitly. Both explicit paths drop the same probabilities
    for the same key (`dropout.keep_mask`).
    """
    batch, length, hidden = x_BxLxH.shape
    qkv_BxLx3xNxD = self.qkv(x_BxLxH).reshape(batch, length, 3, self.num_heads, self.head_dim)
    query_BxLxNxD, key_BxLxNxD, value_BxLxNxD = jnp.unstack(qkv_BxLx3xNxD, axis=2)
    dropout = ((draw_seed(self.dropout.rngs()), self.dropout.rate)
               if self.dropout.active(deterministic) else None)
    if jax.default_backend() == "cpu":
      context_BxLxNxD = _attention_per_example(query_BxLxNxD, key_BxLxNxD, value_BxLxNxD,
                                               mask_Bx1x1xL, dropout)
    elif dropout is None:
      context_BxLxNxD = jax.nn.dot_product_attention(query_BxLxNxD, key_BxLxNxD, value_BxLxNxD,
                                                     mask=mask_Bx1x1xL)
    else:
      context_BxLxNxD = _attention_batched(query_BxLxNxD, key_BxLxNxD, value_BxLxNxD,
                                           mask_Bx1x1xL, dropout)
    return self.out(context_BxLxNxD.reshape(batch, length, hidden))


def _attention_batched(query_BxLxNxD: jax.Array, key_BxLxNxD: jax.Array,
                       value_BxLxNxD: jax.Array, mask_Bx1x1xL: jax.Array,
                       dropout: tuple[jax.Array, float]) -> jax.Array:
  """Softmax attention over the whole batch with dropout on the probabilities."""
  seed, rate = dropout
  scores_BxNxLxL = jnp.einsum("bqnd,bknd->bnqk", query_BxLxNxD, key_BxLxNxD,
                              preferred_element_type=jnp.float32)
  scores_BxNxLxL = scores_BxNxLxL / math.sqrt(query_BxLxNxD.shape[-1])
  scores_BxNxLxL = jnp.where(mask_Bx1x1xL, scores_BxNxLxL, jnp.finfo(jnp.float32).min)
  probs_BxNxLxL = jax.nn.softmax(scores_BxNxLxL, axis=-1)
  probs_BxNxLxL = apply_mask(probs_BxNxLxL, keep_mask(seed, 0, probs_BxNxLxL.shape, rate), rate)
  return jnp.einsum("bnqk,bknd->bqnd", probs_BxNxLxL.astype(value_BxLxNxD.dtype), value_BxLxNxD)


def _attention_per_example(query_BxLxNxD: jax.Array, key_BxLxNxD: jax.Array,
                           value_BxLxNxD: jax.Array, mask_Bx1x1xL: jax.Array,
                           dropout: tuple[jax.Array, float] | None = None) -> jax.Array:
  """Softmax attention one example at a time, for CPUs; `dropout` = (seed, rate) or None.

  A batch's scores tensor [B, N, L, L] (hundreds of MB at L = 384) is far
  larger than any CPU cache, which makes batched attention memory-bound; one
  example's scores (a few MB) stay in cache. Measured on a 2-core CPU at
  MiniLM size: one layer 141 ms instead of 553 ms per batch of 16; the whole
  precompute forward went from 0.72x to 0.78x of PyTorch's throughput (idle).
  Normalising after the value product is exact, also with dropout (each
  query's row is scaled by one number). Under differentiation each example is
  rematerialized (`jax.checkpoint`): storing its [N, L, L] intermediates for
  the backward pass would rebuild the batch-sized tensors in memory, and
  recomputing them is cheaper (train step 4-layer/312 at L = 384 on 2 CPU
  cores: about 13% faster).
  """
  scale = 1.0 / math.sqrt(query_BxLxNxD.shape[-1])
  batch, length, heads, _ = query_BxLxNxD.shape
  if dropout is not None:
    check_stream(batch * heads * length * length)

  def one(args):
    query_LxNxD, key_LxNxD, value_LxNxD, mask_1x1xL, b = args
    scores_NxLxL = jnp.einsum("qnd,knd->nqk", query_LxNxD * scale, key_LxNxD,
                              preferred_element_type=jnp.float32)
    scores_NxLxL = jnp.where(mask_1x1xL, scores_NxLxL, jnp.finfo(jnp.float32).min)
    weights_NxLxL = jnp.exp(scores_NxLxL - scores_NxLxL.max(-1, keepdims=True))
    total_LxN = weights_NxLxL.sum(-1).T
    if dropout is not None:
      seed, rate = dropout
      keep_NxLxL = keep_mask(seed, b * (heads * length * length), weights_NxLxL.shape, rate)
      weights_NxLxL = apply_mask(weights_NxLxL, keep_NxLxL, rate)
    context_LxNxD = jnp.einsum("nqk,knd->qnd", weights_NxLxL.astype(value_LxNxD.dtype),
                               value_LxNxD)
    return context_LxNxD / total_LxN[..., None].astype(value_LxNxD.dtype)

  return jax.lax.map(jax.checkpoint(one), (query_BxLxNxD, key_BxLxNxD, value_BxLxNxD,
                                           mask_Bx1x1xL, jnp.arange(batch, dtype=jnp.uint32)))


class TransformerLayer(nnx.Module):
  """A post-LayerNorm block: attention, add & norm, feed-forward, add & norm."""

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.hidden_act = config.hidden_act
    self.attention = Attention(config, rngs=rngs)
    self.attention_dropout = Dropout(config.hidden_dropout, rngs=rngs)
    self.attention_norm = _layer_norm(config, config.hidden_size, rngs=rngs)
    self.intermediate = dense(config, config.hidden_size, config.intermediate_size, rngs=rngs)
    self.output = dense(config, config.intermediate_size, config.hidden_size, rngs=rngs)
    self.output_dropout = Dropout(config.hidden_dropout, rngs=rngs)
    self.output_norm = _layer_norm(config, config.hidden_size, rngs=rngs)

  def __call__(self, x_BxLxH: jax.Array, mask_Bx1x1xL: jax.Array, *,
               deterministic: bool | None = None) -> jax.Array:
    attended_BxLxH = self.attention(x_BxLxH, mask_Bx1x1xL, deterministic=deterministic)
    attended_BxLxH = self.attention_norm(
        x_BxLxH + self.attention_dropout(attended_BxLxH, deterministic=deterministic))
    inner_BxLxI = ACTIVATIONS[self.hidden_act](self.intermediate(attended_BxLxH))
    output_BxLxH = self.output_dropout(self.output(inner_BxLxI), deterministic=deterministic)
    return self.output_norm(attended_BxLxH + output_BxLxH)


class Encoder(nnx.Module):
  """Token ids -> contextual hidden states `hidden_BxLxH` for any BERT-family config.

  Dropout follows NNX: active unless the module is in eval mode (`model.eval()`)
  or `deterministic=True` is passed; its randomness comes from the `rngs` given here.
  """

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.embeddings = Embeddings(config, rngs=rngs)
    self.projection = (dense(config, config.embedding_dim, config.hidden_size, rngs=rngs)
                       if config.has_embedding_projection else None)
    self.layers = nnx.List([TransformerLayer(config, rngs=rngs)
                            for _ in range(config.num_layer_blocks)])

  def __call__(self, input_ids_BxL: jax.Array, attention_mask_BxL: jax.Array | None = None,
               token_type_ids_BxL: jax.Array | None = None, *,
               deterministic: bool | None = None) -> jax.Array:
    """Encodes a batch; `attention_mask_BxL` is 1 for tokens and 0 for padding."""
    if attention_mask_BxL is None:
      attention_mask_BxL = jnp.ones_like(input_ids_BxL)
    mask_Bx1x1xL = attention_mask_BxL.astype(bool)[:, None, None, :]
    hidden_BxLxH = self.embeddings(input_ids_BxL, token_type_ids_BxL, deterministic=deterministic)
    if self.projection is not None:
      hidden_BxLxH = self.projection(hidden_BxLxH)
    for block in self.config.layer_schedule:
      hidden_BxLxH = self.layers[block](hidden_BxLxH, mask_Bx1x1xL, deterministic=deterministic)
    return hidden_BxLxH


class Pooler(nnx.Module):
  """BERT's pooler: a dense layer and tanh on the [CLS] vector (the family's activation)."""

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.activation = config.pooler_activation
    self.dense = dense(config, config.hidden_size, config.hidden_size, rngs=rngs)

  def __call__(self, cls_BxH: jax.Array) -> jax.Array:
    return ACTIVATIONS[self.activation](self.dense(cls_BxH))
