"""The shape and switches of a BERT-family encoder, and their Hugging Face config.json form.

One frozen `EncoderConfig` describes BERT (MiniLM, TinyBERT), RoBERTa, DistilBERT,
ALBERT and ELECTRA: the five differ only in a handful of switches (token types,
factorized embeddings, shared layers, RoBERTa's position ids, the activation), so
one encoder implementation reads them all. `from_hf_config` translates each
family's `config.json`; `to_hf_config` writes BERT's back for exported rejectors.
"""

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

FAMILIES = ("albert", "bert", "distilbert", "electra", "roberta")


def gelu_erf(x: jax.Array) -> jax.Array:
  """Exact GELU as BERT (and PyTorch) write it: `x * (1 + erf(x / sqrt(2))) / 2`.

  The same function as `jax.nn.gelu(x, approximate=False)`, which goes through
  `erfc`; XLA's CPU `erf` is one branch-free polynomial and made a
  MiniLM feed-forward block about 10% faster on a 2-core CPU. Like BERT's and
  PyTorch's, it rounds the far negative tail (below about -5.5) to 0 where the
  erfc form keeps values of 1e-9 and less.
  """
  return x * (0.5 + 0.5 * jax.lax.erf(x * math.sqrt(0.5)))


# Hugging Face activation names (ACT2FN) -> the same function in JAX.
ACTIVATIONS: Mapping[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": gelu_erf,
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}

# The activation between the dense layer on [CLS] and the classifier, per family
# (BertPooler / AlbertModel.pooler: tanh; RobertaClassificationHead: tanh;
# ElectraClassificationHead: gelu; DistilBertForSequenceClassification: relu).
_POOLER_ACTIVATION = {"albert": "tanh", "bert": "tanh", "distilbert": "relu",
                      "electra": "gelu", "roberta": "tanh"}
# RoBERTa's and ELECTRA's classification heads apply dropout to [CLS] before the dense.
_DROPOUT_BEFORE_POOLER = frozenset({"electra", "roberta"})
_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Everything that fixes an encoder's parameters and forward pass.

  Attributes:
    family: one of FAMILIES; picks the checkpoint naming and the classifier head.
    vocab_size, hidden_size, num_layers, num_heads, intermediate_size: the usual sizes.
    max_position_embeddings: rows of the position table.
    type_vocab_size: rows of the token-type table; 0 for none (DistilBERT).
    embedding_size: width of the embedding tables when factorized (ALBERT, ELECTRA);
      None means hidden_size.
    num_hidden_groups: ALBERT's distinct layer groups shared across depth.
    inner_group_num: ALBERT's layers per group.
    position_offset: 0 for positions 0..L-1; k > 0 for RoBERTa's ids, where
      non-padding tokens count from k and padding takes k - 1 (k = pad_token_id + 1).
    layer_norm_eps: LayerNorm epsilon.
    hidden_act: a Hugging Face activation name (a key of ACTIVATIONS).
    hidden_dropout, attention_dropout, classifier_dropout: dropout rates.
    pad_token_id: the padding token (RoBERTa's position ids depend on it).
    initializer_range: stddev of the normal init of fresh weights (as HF).
    dtype: compute dtype, "float32" or "bfloat16".
    param_dtype: parameter dtype (float32).
  """
  family: str
  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  intermediate_size: int
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  embedding_size: int | None = None
  num_hidden_groups: int = 1
  inner_group_num: int = 1
  position_offset: int = 0
  layer_norm_eps: float = 1e-12
  hidden_act: str = "gelu"
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  classifier_dropout: float = 0.1
  pad_token_id: int = 0
  initializer_range: float = 0.02
  dtype: str = "float32"
  param_dtype: str = "float32"

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"unknown encoder family {self.family!r}; supported: {', '.join(FAMILIES)}")
    if self.hidden_size % self.num_heads:
      raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                       f"num_heads {self.num_heads}")
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(f"unsupported hidden_act {self.hidden_act!r}; "
                       f"supported: {', '.join(sorted(ACTIVATIONS))}")
    for field in ("dtype", "param_dtype"):
      if getattr(self, field) not in _DTYPES:
        raise ValueError(f"{field} must be one of {_DTYPES}, got {getattr(self, field)!r}")
    if self.num_layers < 1:
      raise ValueError(f"num_layers must be at least 1, got {self.num_layers}")
    if self.family != "albert" and (self.num_hidden_groups, self.inner_group_num) != (1, 1):
      raise ValueError("num_hidden_groups and inner_group_num are ALBERT switches; "
                       f"family {self.family!r} needs 1 and 1")
    if self.family not in ("albert", "electra") and self.embedding_dim != self.hidden_size:
      raise ValueError(f"factorized embeddings (embedding_size {self.embedding_size} != "
                       f"hidden_size {self.hidden_size}) are for ALBERT and ELECTRA, "
                       f"not {self.family!r}")
    if self.num_layers % self.num_hidden_groups:
      raise ValueError(f"num_layers {self.num_layers} is not a multiple of "
                       f"num_hidden_groups {self.num_hidden_groups}")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def embedding_dim(self) -> int:
    """Width of the embedding tables (hidden_size unless factorized)."""
    return self.embedding_size or self.hidden_size

  @property
  def has_embedding_projection(self) -> bool:
    """ALBERT always maps embeddings to hidden size; ELECTRA only when they differ."""
    return self.family == "albert" or self.embedding_dim != self.hidden_size

  @property
  def num_layer_blocks(self) -> int:
    """Distinct parameter sets of transformer layers (ALBERT shares them across depth)."""
    if self.family == "albert":
      return self.num_hidden_groups * self.inner_group_num
    return self.num_layers

  @property
  def layer_schedule(self) -> tuple[int, ...]:
    """The block applied at each depth, in order (as AlbertTransformer assigns groups)."""
    if self.family != "albert":
      return tuple(range(self.num_layers))
    layers_per_group = self.num_layers // self.num_hidden_groups
    return tuple((i // layers_per_group) * self.inner_group_num + j
                 for i in range(self.num_layers) for j in range(self.inner_group_num))

  @property
  def pooler_activation(self) -> str:
    """The activation on the dense [CLS] projection of the family's classifier head."""
    return _POOLER_ACTIVATION[self.family]

  @property
  def dropout_before_pooler(self) -> bool:
    """Whether the family's classifier head drops out [CLS] before its dense layer."""
    return self.family in _DROPOUT_BEFORE_POOLER

  @property
  def compute_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  @property
  def parameter_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.param_dtype)

  def truncated(self, num_layers: int) -> "EncoderConfig":
    """The same encoder keeping only its first `num_layers` layers (a cheaper expert)."""
    if not 1 <= num_layers <= self.num_layers:
      raise ValueError(f"cannot keep {num_layers} layers of a {self.num_layers}-layer encoder")
    return dataclasses.replace(self, num_layers=num_layers)

  @classmethod
  def from_hf_config(cls, hf: Mapping[str, Any], **overrides: Any) -> "EncoderConfig":
    """Reads a Hugging Face config.json dict (any supported `model_type`).

    `overrides` replace fields afterwards (e.g. dtype="bfloat16", num_layers=3).
    Raises ValueError naming the model type or option we do not implement.
    """
    model_type = hf.get("model_type")
    if model_type not in FAMILIES:
      architectures = ", ".join(hf.get("architectures") or []) or "unknown architecture"
      raise ValueError(f"unsupported architecture {architectures} (model_type {model_type!r}); "
                       f"supported model types: {', '.join(FAMILIES)}")
    if hf.get("position_embedding_type", "absolute") != "absolute":
      raise ValueError(f"unsupported position_embedding_type "
                       f"{hf['position_embedding_type']!r} (only 'absolute')")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
      raise ValueError(f"{model_type} decoders and cross-attention are not supported")
    if model_type == "distilbert":
      fields = dict(
          hidden_size=hf["dim"], num_layers=hf["n_layers"], num_heads=hf["n_heads"],
          intermediate_size=hf["hidden_dim"], type_vocab_size=0,
          hidden_act=hf.get("activation", "gelu"), hidden_dropout=hf.get("dropout", 0.1),
          attention_dropout=hf.get("attention_dropout", 0.1),
          classifier_dropout=hf.get("seq_classif_dropout", 0.2))
    else:
      hidden_dropout = hf.get("hidden_dropout_prob", 0.1)
      classifier_dropout = hf.get("classifier_dropout_prob" if model_type == "albert"
                                  else "classifier_dropout")
      fields = dict(
          hidden_size=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
          num_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
          type_vocab_size=hf.get("type_vocab_size", 2),
          embedding_size=hf.get("embedding_size"),
          layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
          hidden_act=hf.get("hidden_act", "gelu"), hidden_dropout=hidden_dropout,
          attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
          classifier_dropout=(hidden_dropout if classifier_dropout is None
                              else classifier_dropout))
    if model_type == "albert":
      fields.update(num_hidden_groups=hf.get("num_hidden_groups", 1),
                    inner_group_num=hf.get("inner_group_num", 1))
    pad_token_id = hf.get("pad_token_id")
    pad_token_id = (1 if model_type == "roberta" else 0) if pad_token_id is None else pad_token_id
    if model_type == "roberta":
      fields["position_offset"] = pad_token_id + 1
    if fields.get("embedding_size") == fields["hidden_size"]:
      fields["embedding_size"] = None
    config = cls(family=model_type, vocab_size=hf["vocab_size"],
                 max_position_embeddings=hf.get("max_position_embeddings", 512),
                 pad_token_id=pad_token_id,
                 initializer_range=hf.get("initializer_range", 0.02), **fields)
    return dataclasses.replace(config, **overrides) if overrides else config

  def to_hf_config(self) -> dict[str, Any]:
    """BERT's config.json fields (without `architectures`/labels, which the exporter adds)."""
    if self.family != "bert":
      raise ValueError(f"to_hf_config writes BERT configs only, not {self.family!r}")
    return {
        "model_type": "bert",
        "vocab_size": self.vocab_size,
        "hidden_size": self.hidden_size,
        "num_hidden_layers": self.num_layers,
        "num_attention_heads": self.num_heads,
        "intermediate_size": self.intermediate_size,
        "hidden_act": self.hidden_act,
        "hidden_dropout_prob": self.hidden_dropout,
        "attention_probs_dropout_prob": self.attention_dropout,
        "classifier_dropout": self.classifier_dropout,
        "max_position_embeddings": self.max_position_embeddings,
        "type_vocab_size": self.type_vocab_size,
        "layer_norm_eps": self.layer_norm_eps,
        "initializer_range": self.initializer_range,
        "pad_token_id": self.pad_token_id,
        "position_embedding_type": "absolute",
    }
