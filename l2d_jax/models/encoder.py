"""One Flax NNX transformer encoder for the BERT family, and BERT's [CLS] pooler.

BERT, RoBERTa, DistilBERT, ALBERT and ELECTRA are the same post-LayerNorm encoder
with different switches (see `EncoderConfig`): token-type embeddings or none,
RoBERTa's padding-aware position ids, factorized embeddings projected to the hidden
size, and ALBERT's few layer blocks reused across depth. Parameter names follow the
roles, not any one family's checkpoint; `hf_import` maps checkpoints onto them.

Query, key and value share one fused projection (`qkv`): one [H, 3H] matmul beat
three [H, H] ones by about 8% on the attention block at MiniLM's sizes on CPU.
Parameters are `param_dtype` (fp32); compute runs in `dtype` (fp32 or bf16) with
the attention softmax and LayerNorm statistics in fp32. Padding is read from the
attention mask as lengths (tokens first, then padding), which is what fused
attention kernels take (`attention`).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from l2d_jax.models import attention as attention_lib
from l2d_jax.models.config import ACTIVATIONS, EncoderConfig
from l2d_jax.models.dropout import Dropout, draw_seed


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
  """Word + position (+ token type) embeddings, LayerNorm and dropout.

  The lookups read the fp32 tables and cast what they gather, so that their
  gradients stay out of the compute dtype: `nnx.Embed` casts the whole table
  first, which makes the backward pass a bf16 scatter-add, and GPUs have no
  native bf16 atomic add (a compare-and-swap loop per element). BERT's absolute
  positions are the table's first L rows for every sequence, added by
  broadcasting, and token types pick rows with a one-hot product: their
  gradients are sums over the batch instead of scatters of B * L rows onto L
  rows and onto 2 (the contention that made bf16 training 5x slower than fp32
  on an H200). RoBERTa's padding-aware positions still gather, in fp32.
  """

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.position_offset = config.position_offset
    self.pad_token_id = config.pad_token_id
    self.max_positions = config.max_position_embeddings
    self.dtype = config.compute_dtype
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
    embedded_BxLxE = jnp.take(self.word.embedding[...], input_ids_BxL, axis=0)
    if self.position_offset == 0:
      embedded_BxLxE = embedded_BxLxE + self.position.embedding[:length]
    else:
      positions_BxL = position_ids(input_ids_BxL, self.position_offset, self.pad_token_id)
      embedded_BxLxE = embedded_BxLxE + jnp.take(self.position.embedding[...], positions_BxL,
                                                 axis=0)
    if self.token_type is not None:
      if token_type_ids_BxL is None:
        token_type_ids_BxL = jnp.zeros_like(input_ids_BxL)
      table_TxE = self.token_type.embedding[...]
      one_hot_BxLxT = jax.nn.one_hot(token_type_ids_BxL, table_TxE.shape[0], dtype=table_TxE.dtype)
      embedded_BxLxE = embedded_BxLxE + jnp.einsum("blt,te->ble", one_hot_BxLxT, table_TxE,
                                                   precision=jax.lax.Precision.HIGHEST)
    embedded_BxLxE = embedded_BxLxE.astype(self.dtype)
    return self.dropout(self.norm(embedded_BxLxE), deterministic=deterministic)


class Attention(nnx.Module):
  """Multi-head self-attention with a fused query/key/value projection."""

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.num_heads = config.num_heads
    self.head_dim = config.head_dim
    self.qkv = dense(config, config.hidden_size, 3 * config.hidden_size, rngs=rngs)
    self.out = dense(config, config.hidden_size, config.hidden_size, rngs=rngs)
    self.dropout = Dropout(config.attention_dropout, rngs=rngs)

  def __call__(self, x_BxLxH: jax.Array, lengths_B: jax.Array, *,
               deterministic: bool | None = None) -> jax.Array:
    """Attends every position to the first `lengths_B` positions of its sequence.

    The kernel depends on the backend and on whether attention dropout is
    active (`attention.choose_kernel`): on GPUs, training with attention
    dropout spells the probabilities out, which fused kernels cannot drop.
    """
    batch, length, hidden = x_BxLxH.shape
    qkv_BxLx3xNxD = self.qkv(x_BxLxH).reshape(batch, length, 3, self.num_heads, self.head_dim)
    query_BxLxNxD, key_BxLxNxD, value_BxLxNxD = jnp.unstack(qkv_BxLx3xNxD, axis=2)
    dropout = ((draw_seed(self.dropout.rngs()), self.dropout.rate)
               if self.dropout.active(deterministic) else None)
    context_BxLxNxD = attention_lib.attend(query_BxLxNxD, key_BxLxNxD, value_BxLxNxD, lengths_B,
                                           dropout)
    return self.out(context_BxLxNxD.reshape(batch, length, hidden))


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

  def __call__(self, x_BxLxH: jax.Array, lengths_B: jax.Array, *,
               deterministic: bool | None = None) -> jax.Array:
    attended_BxLxH = self.attention(x_BxLxH, lengths_B, deterministic=deterministic)
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
    """Encodes a batch; `attention_mask_BxL` is 1 for tokens and 0 for padding.

    Padding must come after the tokens (as every tokenizer here pads): only the
    mask's row sums are read, as sequence lengths.
    """
    if attention_mask_BxL is None:
      lengths_B = jnp.full(input_ids_BxL.shape[:1], input_ids_BxL.shape[1], jnp.int32)
    else:
      lengths_B = jnp.sum(attention_mask_BxL != 0, axis=1, dtype=jnp.int32)
    hidden_BxLxH = self.embeddings(input_ids_BxL, token_type_ids_BxL, deterministic=deterministic)
    if self.projection is not None:
      hidden_BxLxH = self.projection(hidden_BxLxH)
    for block in self.config.layer_schedule:
      hidden_BxLxH = self.layers[block](hidden_BxLxH, lengths_B, deterministic=deterministic)
    return hidden_BxLxH


class Pooler(nnx.Module):
  """BERT's pooler: a dense layer and tanh on the [CLS] vector (the family's activation)."""

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.activation = config.pooler_activation
    self.dense = dense(config, config.hidden_size, config.hidden_size, rngs=rngs)

  def __call__(self, cls_BxH: jax.Array) -> jax.Array:
    return ACTIVATIONS[self.activation](self.dense(cls_BxH))
