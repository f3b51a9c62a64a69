"""Task heads on the BERT-family encoder: span extraction (experts) and classification (rejector).

`SpanModel` is Hugging Face's *ForQuestionAnswering: a Linear(hidden, 2) on every
token gives start and end logits. `SequenceClassifier` is *ForSequenceClassification:
the family's [CLS] head (BERT: pooler -> dropout -> classifier) gives one logit per
label, here one per agent the rejector can defer to. Both return fp32 logits
whatever the compute dtype, so losses and stored scores keep their precision.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from l2d_jax.models.config import EncoderConfig
from l2d_jax.models.dropout import Dropout
from l2d_jax.models.encoder import Encoder, Pooler, dense


class SpanModel(nnx.Module):
  """Encoder + `qa_outputs` -> (`start_logits_BxL`, `end_logits_BxL`)."""

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.encoder = Encoder(config, rngs=rngs)
    self.qa_outputs = dense(config, config.hidden_size, 2, rngs=rngs)

  def __call__(self, input_ids_BxL: jax.Array, attention_mask_BxL: jax.Array | None = None,
               token_type_ids_BxL: jax.Array | None = None, *,
               deterministic: bool | None = None) -> tuple[jax.Array, jax.Array]:
    """Start and end logits of every token (padding included; the decoder masks them)."""
    return self.span_logits(self.encoder(input_ids_BxL, attention_mask_BxL, token_type_ids_BxL,
                                         deterministic=deterministic))

  def span_logits(self, hidden_BxLxH: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Start and end logits from the encoder's final hidden states (for callers that keep them)."""
    logits_BxLx2 = self.qa_outputs(hidden_BxLxH).astype(jnp.float32)
    return logits_BxLx2[..., 0], logits_BxLx2[..., 1]


class SequenceClassifier(nnx.Module):
  """Encoder + the family's [CLS] head -> `logits_BxJ` over `num_labels` classes."""

  def __init__(self, config: EncoderConfig, num_labels: int, *, rngs: nnx.Rngs):
    self.config = config
    self.num_labels = num_labels
    self.encoder = Encoder(config, rngs=rngs)
    self.pooler = Pooler(config, rngs=rngs)
    self.dropout = Dropout(config.classifier_dropout, rngs=rngs)
    self.classifier = dense(config, config.hidden_size, num_labels, rngs=rngs)

  def __call__(self, input_ids_BxL: jax.Array, attention_mask_BxL: jax.Array | None = None,
               token_type_ids_BxL: jax.Array | None = None, *,
               deterministic: bool | None = None) -> jax.Array:
    """One logit per label for each sequence."""
    hidden_BxLxH = self.encoder(input_ids_BxL, attention_mask_BxL, token_type_ids_BxL,
                                deterministic=deterministic)
    cls_BxH = hidden_BxLxH[:, 0]
    if self.config.dropout_before_pooler:
      cls_BxH = self.dropout(cls_BxH, deterministic=deterministic)
    pooled_BxH = self.dropout(self.pooler(cls_BxH), deterministic=deterministic)
    return self.classifier(pooled_BxH).astype(jnp.float32)
