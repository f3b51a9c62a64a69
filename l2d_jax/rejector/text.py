"""The text source: the question and the start of its context, read by a BERT-family encoder.

Its vector is the encoder's pooled [CLS] state (the family's pooler, then
dropout in training): exactly what a `SequenceClassifier` feeds its classifier,
so a rejector that reads only the text is a BERT sequence classifier and is
exported as one (`hf_view`). The encoder is TinyBERT-sized from scratch or a
pretrained backbone (optionally truncated); its inputs are the token windows
of `train.rejector.rejector_inputs`.
"""

import numpy as np
from flax import nnx

from l2d_jax.models import flops as flops_lib
from l2d_jax.models import hf_import
from l2d_jax.models.config import EncoderConfig
from l2d_jax.models.heads import SequenceClassifier
from l2d_jax.rejector.model import Rejector
from l2d_jax.train.rejector import INPUTS, rejector_inputs

NAME = "text"


class TextSource(nnx.Module):
  """Token ids `[B, L]` -> the encoder's pooled [CLS] state `[B, H]`."""

  name = NAME
  agents = ()  # runs no agent
  learning_rate_group = "encoder"

  def __init__(self, classifier: SequenceClassifier, max_seq_len: int):
    """Takes the encoder, pooler and dropout of `classifier` (its own head is not used)."""
    self.config = classifier.config
    self.max_seq_len = max_seq_len
    self.encoder = classifier.encoder
    self.pooler = classifier.pooler
    self.dropout = classifier.dropout

  @property
  def input_specs(self) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {key: ("int32", (self.max_seq_len,)) for key in INPUTS}

  @property
  def dim(self) -> int:
    return self.config.hidden_size

  def __call__(self, batch: dict, *, deterministic: bool | None = None):
    hidden_BxLxH = self.encoder(*(batch[k] for k in INPUTS), deterministic=deterministic)
    cls_BxH = hidden_BxLxH[:, 0]
    if self.config.dropout_before_pooler:
      cls_BxH = self.dropout(cls_BxH, deterministic=deterministic)
    return self.dropout(self.pooler(cls_BxH), deterministic=deterministic)

  def record(self) -> dict:
    """Token windows of the exported tokenizer, `max_seq_len` long."""
    return {"max_seq_len": self.max_seq_len}

  def flops(self) -> float:
    """The encoder over `max_seq_len` tokens and the pooler (`models.flops`)."""
    return float(flops_lib.forward_flops(self.config, self.max_seq_len, task="base")
                 + 2 * self.dim * self.dim)


def text_source(backbone: str, *, vocab_size: int, num_layers: int, hidden_size: int,
                num_heads: int, intermediate_size: int, max_seq_len: int,
                compute_dtype: str = "float32", attention_dropout: float | None = None,
                seed: int = 0) -> TextSource:
  """A TinyBERT-sized encoder from scratch, or a pretrained backbone (first `num_layers`).

  `attention_dropout` None keeps the backbone's (scratch: BERT's 0.1).
  """
  if backbone == "scratch":
    config = EncoderConfig(family="bert", vocab_size=vocab_size, hidden_size=hidden_size,
                           num_layers=num_layers, num_heads=num_heads,
                           intermediate_size=intermediate_size,
                           max_position_embeddings=max(512, max_seq_len), dtype=compute_dtype,
                           **({} if attention_dropout is None
                              else {"attention_dropout": attention_dropout}))
    return TextSource(SequenceClassifier(config, 1, rngs=nnx.Rngs(seed)), max_seq_len)
  from l2d_jax.models.hub import resolve_model_dir  # pylint: disable=import-outside-toplevel
  return TextSource(hf_import.load_pretrained(
      resolve_model_dir(backbone), task="classify", num_labels=1, num_layers=num_layers or None,
      dtype=compute_dtype, attention_dropout=attention_dropout, seed=seed).model, max_seq_len)


def text_rejector(backbone: str, num_agents: int, *, seed: int = 0, **encoder) -> Rejector:
  """A rejector that reads the text only (`encoder`: the keyword arguments of `text_source`)."""
  return Rejector([text_source(backbone, seed=seed, **encoder)], num_agents, seed=seed)


def check(config) -> None:
  """Nothing to refuse: every experiment has a question text."""
  del config


def inputs(context) -> dict[str, np.ndarray]:
  """The token windows of every evaluation question (`sources.SourceContext`)."""
  return rejector_inputs(context.pool.examples, context.tokenizer,
                         context.config.rejector.max_seq_len)


def build(context, train_inputs: dict[str, np.ndarray]) -> TextSource:
  """The configured encoder (`rejector.*`); the inputs are not needed to build it."""
  del train_inputs
  r, t = context.config.rejector, context.config.train
  return text_source(r.backbone, vocab_size=len(context.tokenizer), num_layers=r.num_layers,
                     hidden_size=r.hidden_size, num_heads=r.num_heads,
                     intermediate_size=r.intermediate_size, max_seq_len=r.max_seq_len,
                     compute_dtype=t.compute_dtype, attention_dropout=r.attention_dropout,
                     seed=t.seed)


def hf_view(rejector: Rejector) -> SequenceClassifier | None:
  """The rejector as the BERT sequence classifier it is when it reads the text only, else None.

  Shares the rejector's modules (nothing is copied), for the Hugging Face export. An
  ensemble (`rejector.ensemble`) is several encoders under one head: not one BERT.
  """
  if not isinstance(rejector, Rejector) or rejector.source_names != (NAME,):
    return None
  source = rejector.sources[0]
  view = nnx.eval_shape(lambda: SequenceClassifier(source.config, rejector.num_labels,
                                                   rngs=nnx.Rngs(0)))
  view.encoder, view.pooler, view.dropout = source.encoder, source.pooler, source.dropout
  view.classifier = rejector.classifier
  return view
