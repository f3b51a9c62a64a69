"""Writes a trained BERT rejector as a Hugging Face BertForSequenceClassification directory.

Users of the rejector should not need JAX: `model.safetensors` holds our
parameters under Hugging Face BERT names (`hf_import.to_hf_state_dict`),
`config.json` the architecture with one label per agent, and the tokenizer
files sit beside them, so `BertForSequenceClassification.from_pretrained(dir)`
and `AutoTokenizer.from_pretrained(dir)` on PyTorch rebuild the same router.
"""

import json
import pathlib
from collections.abc import Sequence
from typing import Any

import safetensors.numpy
import transformers

from l2d_jax.models import hf_import
from l2d_jax.models.heads import SequenceClassifier

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def check_agent_names(agent_names: Sequence[str], num_labels: int) -> None:
  """Agent names become labels: one per rejector output, non-empty and distinct."""
  if len(agent_names) != num_labels:
    raise ValueError(f"{len(agent_names)} agent names for a rejector with {num_labels} outputs")
  if not all(isinstance(name, str) and name for name in agent_names):
    raise ValueError(f"agent names must be non-empty strings, got {list(agent_names)}")
  if len(set(agent_names)) != len(agent_names):
    raise ValueError(f"agent names must be distinct, got {list(agent_names)}")


def hf_config(model: SequenceClassifier, agent_names: Sequence[str]) -> dict[str, Any]:
  """The model's config.json: BERT's fields, the architecture and the agents as labels."""
  check_agent_names(agent_names, model.num_labels)
  config = model.config.to_hf_config()
  config.update(
      architectures=["BertForSequenceClassification"],
      num_labels=len(agent_names),
      id2label={str(j): name for j, name in enumerate(agent_names)},
      label2id={name: j for j, name in enumerate(agent_names)},
  )
  return config


def export_hf(model: SequenceClassifier, tokenizer: transformers.PreTrainedTokenizerBase,
              out_dir: str | pathlib.Path, *, agent_names: Sequence[str]) -> pathlib.Path:
  """Writes `model.safetensors`, `config.json` and the tokenizer's files into `out_dir`.

  The weights are fp32 whatever the model's compute dtype. Raises ValueError for
  a non-BERT rejector or agent names that do not fit its outputs.
  """
  config = hf_config(model, agent_names)
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  # transformers reads safetensors files whose metadata names a framework it knows.
  safetensors.numpy.save_file(hf_import.to_hf_state_dict(model), out_dir / WEIGHTS_FILE,
                              metadata={"format": "pt"})
  (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n",
                                     encoding="utf-8")
  tokenizer.save_pretrained(str(out_dir))
  return out_dir
