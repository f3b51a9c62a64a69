"""Per-query agent costs `c_j = alpha_j * loss_j + beta_j`, computed on the device.

`loss_j` is one of 1 - F1, 1 - EM (per-example metrics read from the agent
store) or the negative log-likelihood of the gold span under the agent's own
start/end logits. All of it is pure `jnp`, so the costs are formed inside the
jitted step from arrays already on the device: a sweep over alpha, beta or the
loss type never re-reads or recomputes agent outputs.

Span NLL granularity: experts see token windows (features), costs are per
example. `span_nll_FxJ` scores each feature and `example_span_nll_ExJ` reduces
features to examples. Agents whose tokenizations differ have different feature
sets; score each with J = 1 against its own features and stack the `[E, 1]`
results along the agent axis.
"""

import enum

import jax
import jax.numpy as jnp

from l2d_jax.errors import ConfigError


class LossType(enum.StrEnum):
  """Which per-example loss the cost is built from."""
  ONE_MINUS_F1 = "1-f1"
  ONE_MINUS_EM = "1-em"
  SPAN_NLL = "span_nll"


def agent_costs(loss_BxJ: jax.Array, alpha_J: jax.Array | float,
                beta_J: jax.Array | float) -> jax.Array:
  """`c = alpha * loss + beta` per query and agent, `[B, J]` (alpha, beta: `[J]` or scalars)."""
  loss_BxJ = jnp.asarray(loss_BxJ)
  dtype = jnp.promote_types(loss_BxJ.dtype, jnp.float32)
  return (jnp.asarray(alpha_J, dtype) * loss_BxJ.astype(dtype) +
          jnp.asarray(beta_J, dtype))


def select_loss(loss_type: LossType | str, *, em_ExJ: jax.Array, f1_ExJ: jax.Array,
                span_nll_ExJ: jax.Array | None = None) -> jax.Array:
  """The `[E, J]` loss of the chosen type.

  `em_ExJ` and `f1_ExJ` are per-example scores in [0, 1] (not percentages).
  `loss_type` is static (a Python value), so switching it retraces the step
  but reuses every array already on the device.
  """
  try:
    loss_type = LossType(loss_type)
  except ValueError:
    raise ConfigError(f"unknown loss type {loss_type!r}; expected one of "
                     f"{[t.value for t in LossType]}") from None
  if loss_type is LossType.ONE_MINUS_F1:
    return 1.0 - jnp.asarray(f1_ExJ, jnp.float32)
  if loss_type is LossType.ONE_MINUS_EM:
    return 1.0 - jnp.asarray(em_ExJ, jnp.float32)
  if span_nll_ExJ is None:
    raise ValueError("loss type 'span_nll' needs span_nll_ExJ (see example_span_nll_ExJ)")
  return jnp.asarray(span_nll_ExJ, jnp.float32)


def _gold_log_prob_FxJ(logits_FxJxL: jax.Array, pos_F: jax.Array,
                       valid_FxJxL: jax.Array) -> jax.Array:
  """log-softmax over the valid positions, read at the gold position; -inf if that is invalid."""
  logits_FxJxL = logits_FxJxL.astype(jnp.promote_types(logits_FxJxL.dtype, jnp.float32))
  num_features, num_agents, seq_len = logits_FxJxL.shape
  pos_FxJx1 = jnp.broadcast_to(pos_F[:, None, None], (num_features, num_agents, 1))
  in_range_FxJ = ((pos_FxJx1 >= 0) & (pos_FxJx1 < seq_len))[..., 0]
  pos_FxJx1 = jnp.clip(pos_FxJx1, 0, seq_len - 1)
  log_norm_FxJ = jax.nn.logsumexp(logits_FxJxL, axis=-1, where=valid_FxJxL)
  gold_FxJ = jnp.take_along_axis(logits_FxJxL, pos_FxJx1, axis=-1)[..., 0]
  gold_valid_FxJ = in_range_FxJ & jnp.take_along_axis(valid_FxJxL, pos_FxJx1, axis=-1)[..., 0]
  return jnp.where(gold_valid_FxJ, gold_FxJ - log_norm_FxJ, -jnp.inf)


def span_nll_FxJ(start_logits_FxJxL: jax.Array, end_logits_FxJxL: jax.Array,
                 start_pos_F: jax.Array, end_pos_F: jax.Array,
                 valid_mask_FxJxL: jax.Array) -> jax.Array:
  """Negative log-likelihood of each feature's gold span under each agent, `[F, J]`.

  `-log p(start) - log p(end)`, each a softmax over the valid positions only
  (context tokens and CLS; padding and question tokens masked out): the
  extractive-QA training loss, which is what "how likely this agent finds the
  gold answer" means for a span model. Unanswerable examples and windows that
  miss the answer carry the CLS label. A gold position that is masked or out
  of range, and a fully masked (padding) feature, give +inf, so such a feature
  never wins the per-example minimum.
  """
  log_p_start_FxJ = _gold_log_prob_FxJ(start_logits_FxJxL, start_pos_F, valid_mask_FxJxL)
  log_p_end_FxJ = _gold_log_prob_FxJ(end_logits_FxJxL, end_pos_F, valid_mask_FxJxL)
  return -(log_p_start_FxJ + log_p_end_FxJ)


def gold_window_mask(start_pos_F: jax.Array, example_index_F: jax.Array,
                     is_impossible_E: jax.Array, cls_index: int = 0) -> jax.Array:
  """Which features hold their example's gold label, `bool[F]`.

  A window of an answerable example holds the gold only if the answer lies
  inside it (its start label is not CLS); every window of an unanswerable
  example holds its gold (CLS).
  """
  return (start_pos_F != cls_index) | jnp.asarray(is_impossible_E)[example_index_F]


def example_span_nll_ExJ(span_nll_FxJ: jax.Array, example_index_F: jax.Array,
                         holds_gold_F: jax.Array, num_examples: int) -> jax.Array:
  """Per-example span NLL, `[E, J]`: the best (lowest) over the windows holding the gold.

  The minimum, because at prediction time an agent answers from the window
  where it is most confident; taking only gold-holding windows (see
  `gold_window_mask`) keeps a confident CLS in a window that merely misses the
  answer from passing as a good answer. An example with no gold-holding window
  (an answer too long for any window) falls back to the best of all its
  windows under their own (CLS) labels. Feature rows with an example index
  outside [0, num_examples), e.g. -1 for padding, are ignored; an example with
  no feature at all gets +inf. `num_examples` is static.
  """
  gold_nll_FxJ = jnp.where(holds_gold_F[:, None], span_nll_FxJ, jnp.inf)
  best_gold_ExJ = jax.ops.segment_min(gold_nll_FxJ, example_index_F, num_segments=num_examples)
  best_any_ExJ = jax.ops.segment_min(span_nll_FxJ, example_index_F, num_segments=num_examples)
  return jnp.where(jnp.isfinite(best_gold_ExJ), best_gold_ExJ, best_any_ExJ)
