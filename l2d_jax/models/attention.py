"""Multi-head softmax attention over right-padded sequences, and which kernel runs it.

Padding is given as lengths, `lengths_B` (each sequence's tokens come first,
then padding, as every tokenizer here pads), not as a `[B, 1, 1, L]` mask:
lengths are what fused kernels take. cuDNN's flash attention refuses such a
mask ("Bias must have same seq length as QKV") but accepts sequence lengths.

Kernels (`choose_kernel`):
- "per_example" (CPU): softmax attention one example at a time (why below).
- "explicit" (accelerators, attention dropout active): the batch's probabilities
  spelled out so that some can be dropped; fused kernels never materialize them.
- "cudnn" (NVIDIA GPUs, bf16 or fp16): `jax.nn.dot_product_attention` on cuDNN's
  flash attention, head dims zero-padded to a multiple of 8 (TinyBERT's 26 to 32:
  zero columns change no score and add columns that are cut off).
- "xla" (TPUs, fp32 on GPUs, and any program exported for several platforms):
  `jax.nn.dot_product_attention`'s XLA implementation.

The choice is made when a function is traced, from the default backend. A
program exported for several platforms at once (the router) must not bake one
platform's kernel in: trace it under `portable()`.
"""

import contextlib
import contextvars
import functools
import logging
import math

import jax
import jax.numpy as jnp

from l2d_jax.models.dropout import apply_mask, check_stream, keep_mask

_CUDNN_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
_CUDNN_MAX_HEAD_DIM = 128
_PORTABLE = contextvars.ContextVar("l2d_jax_portable_attention", default=False)


@contextlib.contextmanager
def portable():
  """Within it, attention traces to the XLA kernel whatever the backend (multi-platform exports)."""
  token = _PORTABLE.set(True)
  try:
    yield
  finally:
    _PORTABLE.reset(token)


def choose_kernel(*, backend: str, device_kind: str, dtype: jnp.dtype, head_dim: int,
                  dropout: bool, portable_only: bool = False) -> str:
  """The kernel for one attention call (see the module doc); a pure function, for tests."""
  if portable_only:
    return "explicit" if dropout else "xla"
  if backend == "cpu":
    return "per_example"
  if dropout:
    return "explicit"
  if (backend == "gpu" and device_kind.startswith("NVIDIA") and jnp.dtype(dtype) in _CUDNN_DTYPES
      and head_dim <= _CUDNN_MAX_HEAD_DIM):
    return "cudnn"
  return "xla"


def attend(query_BxLxNxD: jax.Array, key_BxLxNxD: jax.Array, value_BxLxNxD: jax.Array,
           lengths_B: jax.Array, dropout: tuple[jax.Array, float] | None = None) -> jax.Array:
  """Each position attends to the first `lengths_B` positions of its sequence.

  `dropout` is (uint32 seed, rate) to drop attention probabilities, or None.
  Rows of length 0 are read as length 1 (they attend to their first position).
  """
  lengths_B = jnp.maximum(lengths_B.astype(jnp.int32), 1)
  kernel = choose_kernel(backend=jax.default_backend(), device_kind=jax.devices()[0].device_kind,
                         dtype=query_BxLxNxD.dtype, head_dim=query_BxLxNxD.shape[-1],
                         dropout=dropout is not None, portable_only=_PORTABLE.get())
  if kernel == "per_example":
    return attention_per_example(query_BxLxNxD, key_BxLxNxD, value_BxLxNxD, lengths_B, dropout)
  if kernel == "explicit":
    return attention_explicit(query_BxLxNxD, key_BxLxNxD, value_BxLxNxD, lengths_B, dropout)
  if kernel == "cudnn":
    try:
      return attention_fused(query_BxLxNxD, key_BxLxNxD, value_BxLxNxD, lengths_B, "cudnn")
    except (NotImplementedError, RuntimeError, ValueError) as err:  # refused while tracing
      _warn_cudnn_refused(f"{type(err).__name__}: {err}")
  return attention_fused(query_BxLxNxD, key_BxLxNxD, value_BxLxNxD, lengths_B, "xla")


@functools.cache
def _warn_cudnn_refused(reason: str) -> None:
  """Says once per distinct refusal that attention falls back from cuDNN to XLA."""
  logging.warning("cuDNN flash attention refused this call (%s); using XLA's attention", reason)


def key_mask(lengths_B: jax.Array, length: int) -> jax.Array:
  """`[B, 1, 1, L]` True where a key is one of the sequence's tokens."""
  return (jnp.arange(length) < lengths_B[:, None])[:, None, None, :]


def attention_fused(query_BxLxNxD: jax.Array, key_BxLxNxD: jax.Array, value_BxLxNxD: jax.Array,
                    lengths_B: jax.Array, implementation: str = "xla",
                    head_multiple: int | None = None) -> jax.Array:
  """`jax.nn.dot_product_attention` with key lengths, head dims zero-padded to `head_multiple`.

  cuDNN takes head dims that are multiples of 8 (`head_multiple` defaults to 8
  for it, 1 otherwise). Zero query and key columns add nothing to any score
  and zero value columns give output columns that are cut off; the softmax
  scale stays that of the true head dim.
  """
  head_dim = query_BxLxNxD.shape[-1]
  multiple = head_multiple or (8 if implementation == "cudnn" else 1)
  padding = -head_dim % multiple
  widen = lambda x: jnp.pad(x, [(0, 0)] * 3 + [(0, padding)]) if padding else x
  context_BxLxNxP = jax.nn.dot_product_attention(
      widen(query_BxLxNxD), widen(key_BxLxNxD), widen(value_BxLxNxD),
      scale=1.0 / math.sqrt(head_dim), key_value_seq_lengths=lengths_B,
      implementation=implementation)
  return context_BxLxNxP[..., :head_dim]


def attention_explicit(query_BxLxNxD: jax.Array, key_BxLxNxD: jax.Array,
                       value_BxLxNxD: jax.Array, lengths_B: jax.Array,
                       dropout: tuple[jax.Array, float]) -> jax.Array:
  """Softmax attention over the whole batch with dropout on the probabilities."""
  seed, rate = dropout
  scores_BxNxLxL = jnp.einsum("bqnd,bknd->bnqk", query_BxLxNxD, key_BxLxNxD,
                              preferred_element_type=jnp.float32)
  scores_BxNxLxL = scores_BxNxLxL / math.sqrt(query_BxLxNxD.shape[-1])
  scores_BxNxLxL = jnp.where(key_mask(lengths_B, key_BxLxNxD.shape[1]), scores_BxNxLxL,
                             jnp.finfo(jnp.float32).min)
  probs_BxNxLxL = jax.nn.softmax(scores_BxNxLxL, axis=-1)
  probs_BxNxLxL = apply_mask(probs_BxNxLxL, keep_mask(seed, 0, probs_BxNxLxL.shape, rate), rate)
  return jnp.einsum("bnqk,bknd->bqnd", probs_BxNxLxL.astype(value_BxLxNxD.dtype), value_BxLxNxD)


def attention_per_example(query_BxLxNxD: jax.Array, key_BxLxNxD: jax.Array,
                          value_BxLxNxD: jax.Array, lengths_B: jax.Array,
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
  cores: about 13% faster). Drops the same probabilities as
  `attention_explicit` for the same seed (`dropout.keep_mask` offsets).
  """
  scale = 1.0 / math.sqrt(query_BxLxNxD.shape[-1])
  batch, length, heads, _ = query_BxLxNxD.shape
  if dropout is not None:
    check_stream(batch * heads * length * length)

  def one(args):
    query_LxNxD, key_LxNxD, value_LxNxD, length_1, b = args
    scores_NxLxL = jnp.einsum("qnd,knd->nqk", query_LxNxD * scale, key_LxNxD,
                              preferred_element_type=jnp.float32)
    scores_NxLxL = jnp.where(key_mask(length_1, length)[0], scores_NxLxL,
                             jnp.finfo(jnp.float32).min)
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
                                           lengths_B[:, None], jnp.arange(batch, dtype=jnp.uint32)))
