"""What one forward pass of a BERT-family model agent costs, in FLOPs, from its configuration.

An agent's consultation fee can be its compute, so the cost of a query must be
known without running the model: it follows from the `EncoderConfig` and the
window length alone. Only matrix products are counted (a multiply-add is 2
FLOPs, as XLA's cost analysis counts a dot); they are all but a few percent of
the work at realistic sizes:

  embedding projection  2 L E H       (factorized embeddings: ALBERT, some ELECTRAs)
  per applied layer     2 L H 3H      fused query/key/value projection
                        2 L H H       attention output projection
                        2 L^2 H       attention scores (all heads together)
                        2 L^2 H       attention-weighted sum of the values
                        2 L H I * 2   feed-forward in and out
  span head             2 L H 2       start/end logits
  classification head   2 H H + 2 H J pooler dense and classifier on [CLS]

Embedding lookups (gathers), bias adds, residual adds, softmax, LayerNorm,
activations and dropout are left out. They are what XLA's cost analysis
(`xla_flops`) counts on top: 3.4% more for all-MiniLM-L6-v2 at 384 tokens,
under 5% for the hidden-256 test models, most of it the polynomial XLA expands
exact GELU's erf into. ALBERT's shared layers cost as much as distinct ones:
the count follows `layer_schedule`, the layers applied, not the parameters
stored. Every window is counted at its full padded length, since the forward
pass computes padding positions too.
"""

from collections.abc import Callable, Mapping

import jax

from l2d_jax.models.config import EncoderConfig
from l2d_jax.models.hf_import import TASKS, Task


def flops_breakdown(config: EncoderConfig, seq_len: int, task: Task = "span",
                    num_labels: int = 2) -> dict[str, int]:
  """FLOPs of one sequence of `seq_len` tokens, by part of the model (see the module doc)."""
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
  if seq_len < 1:
    raise ValueError(f"seq_len must be positive, got {seq_len}")
  length, hidden, inner = seq_len, config.hidden_size, config.intermediate_size
  layers = len(config.layer_schedule)
  parts = {
      "embedding_projection": (2 * length * config.embedding_dim * hidden
                               if config.has_embedding_projection else 0),
      "attention_projections": layers * 2 * length * hidden * (3 * hidden + hidden),
      "attention_scores": layers * 2 * length * length * hidden,
      "attention_values": layers * 2 * length * length * hidden,
      "feed_forward": layers * 2 * length * hidden * inner * 2,
      "head": 0,
  }
  if task == "span":
    parts["head"] = 2 * length * hidden * 2
  elif task == "classify":
    parts["head"] = 2 * hidden * hidden + 2 * hidden * num_labels
  return parts


def forward_flops(config: EncoderConfig, seq_len: int, batch: int = 1, task: Task = "span",
                  num_labels: int = 2) -> int:
  """FLOPs of a forward pass over `batch` sequences of `seq_len` tokens.

  `task` is "base" (encoder only), "span" (an expert's start/end logits) or
  "classify" (the rejector's `num_labels` logits from [CLS]).
  """
  return batch * sum(flops_breakdown(config, seq_len, task, num_labels).values())


def flops_per_question(config: EncoderConfig, windows_per_question: float,
                       seq_len: int) -> float:
  """Mean FLOPs an expert spends on one question: its windows times one span forward pass.

  `windows_per_question` is the mean over the data, `features.num_features /
  features.num_examples` (a long context is read in several windows).
  """
  if windows_per_question < 1:
    raise ValueError(f"a question has at least one window, got {windows_per_question}")
  return windows_per_question * forward_flops(config, seq_len, task="span")


def xla_flops(fn: Callable, *args) -> float:
  """FLOPs XLA's cost analysis assigns to `jax.jit(fn)(*args)` after compilation.

  The reference the analytic count is checked against. Older jax versions
  return one dict per program in a list; an SPMD executable has one program.
  """
  analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):
    if not analysis:
      raise ValueError("XLA returned no cost analysis for this function")
    analysis = analysis[0]
  if not isinstance(analysis, Mapping) or "flops" not in analysis:
    raise ValueError(f"XLA's cost analysis has no 'flops' entry: {analysis!r}")
  return float(analysis["flops"])
