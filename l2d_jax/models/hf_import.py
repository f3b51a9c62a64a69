"""Hugging Face checkpoints <-> our BERT-family modules, by an explicit name table per family.

A local model directory (`config.json` and `model.safetensors`, a sharded
safetensors index, or `pytorch_model.bin` read with `torch.load(weights_only=True)`
when torch is installed; nothing else is ever unpickled) becomes an `Encoder`
(task "base"), a `SpanModel` ("span", as *ForQuestionAnswering) or a
`SequenceClassifier` ("classify", as *ForSequenceClassification). Each of our
parameters names the checkpoint tensors it is made of (`tensor_map`); Linear
weights are transposed, and query/key/value are concatenated into our fused
projection. A head the checkpoint lacks starts fresh from `seed`; any other
missing tensor, a tensor of the wrong shape or an unsupported architecture is a
`CheckpointError` naming it. `to_hf_state_dict` inverts the table for BERT, so a
trained rejector can be written as a BertForSequenceClassification.
"""

import dataclasses
import importlib.util
import json
import logging
import pathlib
from collections.abc import Mapping
from typing import Literal

import jax.numpy as jnp
import numpy as np
from flax import nnx

from l2d_jax.errors import UserError
from l2d_jax.export import loader as export_loader
from l2d_jax.models.config import EncoderConfig
from l2d_jax.models.encoder import Encoder, dense
from l2d_jax.models.heads import SequenceClassifier, SpanModel

Task = Literal["base", "span", "classify"]
TASKS: tuple[str, ...] = ("base", "span", "classify")

# Hugging Face module names inside one transformer layer, per naming scheme.
_BERT_LAYER = {
    ("attention", "qkv"): ("attention.self.query", "attention.self.key", "attention.self.value"),
    ("attention", "out"): ("attention.output.dense",),
    ("attention_norm",): ("attention.output.LayerNorm",),
    ("intermediate",): ("intermediate.dense",),
    ("output",): ("output.dense",),
    ("output_norm",): ("output.LayerNorm",),
}
_LAYER_NAMES = {
    "bert": _BERT_LAYER,
    "roberta": _BERT_LAYER,
    "electra": _BERT_LAYER,
    "distilbert": {
        ("attention", "qkv"): ("attention.q_lin", "attention.k_lin", "attention.v_lin"),
        ("attention", "out"): ("attention.out_lin",),
        ("attention_norm",): ("sa_layer_norm",),
        ("intermediate",): ("ffn.lin1",),
        ("output",): ("ffn.lin2",),
        ("output_norm",): ("output_layer_norm",),
    },
    "albert": {
        ("attention", "qkv"): ("attention.query", "attention.key", "attention.value"),
        ("attention", "out"): ("attention.dense",),
        ("attention_norm",): ("attention.LayerNorm",),
        ("intermediate",): ("ffn",),
        ("output",): ("ffn_output",),
        ("output_norm",): ("full_layer_layer_norm",),
    },
}
_PROJECTION = {"albert": "encoder.embedding_hidden_mapping_in", "electra": "embeddings_project"}
# (module, lives under the base model's prefix) of the [CLS] dense layer and the classifier.
_POOLER = {"bert": ("pooler.dense", True), "albert": ("pooler", True),
           "roberta": ("classifier.dense", False), "electra": ("classifier.dense", False),
           "distilbert": ("pre_classifier", False)}
_CLASSIFIER = {"bert": "classifier", "albert": "classifier", "distilbert": "classifier",
               "roberta": "classifier.out_proj", "electra": "classifier.out_proj"}
# Non-parameter buffers some checkpoints carry.
_BUFFERS = frozenset({"embeddings.position_ids", "embeddings.token_type_ids"})


class CheckpointError(UserError, ValueError):
  """A checkpoint that cannot become our module: unsupported, incomplete or mis-shaped."""


@dataclasses.dataclass(frozen=True)
class TensorMap:
  """One parameter of ours and the checkpoint tensors it is made of.

  Attributes:
    path: attribute path of the nnx.Param in our module (ints index layer lists).
    hf_names: checkpoint tensor names (without the base prefix such as "bert.");
      several are concatenated on the last axis (fused query/key/value).
    transpose: a Linear weight, [out, in] in PyTorch and [in, out] here.
    in_base: the tensor sits under the base model's prefix in task checkpoints.
    head: a task head that may start fresh when the checkpoint lacks it.
  """
  path: tuple[str | int, ...]
  hf_names: tuple[str, ...]
  transpose: bool = False
  in_base: bool = True
  head: bool = False


@dataclasses.dataclass(frozen=True)
class Loaded:
  """What `load_pretrained` built and what it did with the checkpoint.

  Attributes:
    model: the module with the checkpoint's weights, in eval mode.
    config: its EncoderConfig (after truncation and dtype override).
    fresh: our parameters initialized from the seed because the checkpoint has no such head.
    unused: checkpoint tensors no parameter took (e.g. another task's head).
    dropped: checkpoint tensors of layers removed by `num_layers`.
  """
  model: Encoder | SpanModel | SequenceClassifier
  config: EncoderConfig
  fresh: tuple[str, ...]
  unused: tuple[str, ...]
  dropped: tuple[str, ...]


def _linear(path: tuple[str | int, ...], modules: tuple[str, ...], **kwargs) -> list[TensorMap]:
  return [TensorMap(path + ("kernel",), tuple(f"{m}.weight" for m in modules), True, **kwargs),
          TensorMap(path + ("bias",), tuple(f"{m}.bias" for m in modules), **kwargs)]


def _norm(path: tuple[str | int, ...], module: str) -> list[TensorMap]:
  return [TensorMap(path + ("scale",), (f"{module}.weight",)),
          TensorMap(path + ("bias",), (f"{module}.bias",))]


def _encoder_map(config: EncoderConfig) -> list[TensorMap]:
  """The encoder's parameters, with paths relative to the Encoder."""
  maps = [TensorMap(("embeddings", "word", "embedding"), ("embeddings.word_embeddings.weight",)),
          TensorMap(("embeddings", "position", "embedding"),
                    ("embeddings.position_embeddings.weight",))]
  if config.type_vocab_size:
    maps.append(TensorMap(("embeddings", "token_type", "embedding"),
                          ("embeddings.token_type_embeddings.weight",)))
  maps += _norm(("embeddings", "norm"), "embeddings.LayerNorm")
  if config.has_embedding_projection:
    maps += _linear(("projection",), (_PROJECTION[config.family],))
  for block in range(config.num_layer_blocks):
    if config.family == "albert":
      group, inner = divmod(block, config.inner_group_num)
      prefix = f"encoder.albert_layer_groups.{group}.albert_layers.{inner}"
    elif config.family == "distilbert":
      prefix = f"transformer.layer.{block}"
    else:
      prefix = f"encoder.layer.{block}"
    for role, modules in _LAYER_NAMES[config.family].items():
      path, hf_modules = ("layers", block) + role, tuple(f"{prefix}.{m}" for m in modules)
      maps += _norm(path, hf_modules[0]) if role[-1].endswith("norm") else _linear(path, hf_modules)
  return maps


def tensor_map(config: EncoderConfig, task: Task) -> list[TensorMap]:
  """Every parameter of the `task` module for `config`, with its checkpoint tensors."""
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
  encoder = _encoder_map(config)
  if task == "base":
    return encoder
  maps = [dataclasses.replace(m, path=("encoder",) + m.path) for m in encoder]
  if task == "span":
    return maps + _linear(("qa_outputs",), ("qa_outputs",), in_base=False, head=True)
  pooler, pooler_in_base = _POOLER[config.family]
  return (maps + _linear(("pooler", "dense"), (pooler,), in_base=pooler_in_base, head=True)
          + _linear(("classifier",), (_CLASSIFIER[config.family],), in_base=False, head=True))


def read_hf_config(model_dir: pathlib.Path) -> dict:
  """The directory's config.json as a dict."""
  path = pathlib.Path(model_dir) / "config.json"
  if not path.is_file():
    raise CheckpointError(f"{model_dir} has no config.json")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
  import safetensors.flax  # pylint: disable=import-outside-toplevel  (reads bf16, unlike .numpy)
  return {name: np.asarray(value) for name, value in safetensors.flax.load_file(path).items()}


def read_tensors(model_dir: pathlib.Path) -> dict[str, np.ndarray]:
  """All tensors of the directory's checkpoint, by their Hugging Face names.

  Reads model.safetensors, a sharded model.safetensors.index.json, or (only if torch
  is importable) pytorch_model.bin with `torch.load(weights_only=True)`.
  """
  model_dir = pathlib.Path(model_dir)
  if (model_dir / "model.safetensors").is_file():
    return _read_safetensors(model_dir / "model.safetensors")
  index = model_dir / "model.safetensors.index.json"
  if index.is_file():
    with open(index, encoding="utf-8") as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    return {name: value for shard in shards
            for name, value in _read_safetensors(model_dir / shard).items()}
  pickle = model_dir / "pytorch_model.bin"
  if pickle.is_file():
    if importlib.util.find_spec("torch") is None:
      raise CheckpointError(f"{pickle} is a PyTorch checkpoint and torch is not installed; "
                            "install torch or convert it to model.safetensors")
    import torch  # pylint: disable=import-outside-toplevel
    state = torch.load(pickle, map_location="cpu", weights_only=True)
    return {name: (value.float() if value.is_floating_point() else value).numpy()
            for name, value in state.items()}
  raise CheckpointError(f"{model_dir} has no model.safetensors, model.safetensors.index.json "
                        "or pytorch_model.bin")


def _canonical_names(tensors: Mapping[str, np.ndarray], family: str) -> dict[str, np.ndarray]:
  """Strips the base prefix ("bert.") and renames old LayerNorm gamma/beta to weight/bias."""
  canonical = {}
  for name, value in tensors.items():
    name = name.removeprefix(f"{family}.")
    name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
        "LayerNorm.beta", "LayerNorm.bias")
    canonical[name] = value
  return canonical


def _node(model: nnx.Module, path: tuple[str | int, ...]) -> nnx.Param | nnx.Module:
  """The parameter (or submodule) at `path`."""
  node = model
  for step in path:
    node = node[step] if isinstance(step, int) else getattr(node, step)
  return node


def _expected_hf_shape(shape: tuple[int, ...], parts: int, transpose: bool) -> tuple[int, ...]:
  """The shape each checkpoint tensor must have to fill a parameter of `shape`."""
  split = shape[:-1] + (shape[-1] // parts,)
  return split[::-1] if transpose else split


def _abstract_model(config: EncoderConfig, task: Task,
                    num_labels: int | None) -> Encoder | SpanModel | SequenceClassifier:
  """The `task` module's structure with shapes only: no initializer runs (or compiles)."""
  def build():
    rngs = nnx.Rngs(params=0, dropout=0)
    if task == "base":
      return Encoder(config, rngs=rngs)
    if task == "span":
      return SpanModel(config, rngs=rngs)
    return SequenceClassifier(config, num_labels, rngs=rngs)
  return nnx.eval_shape(build)


def _fill_from_checkpoint(model: nnx.Module, maps: list[TensorMap],
                          tensors: Mapping[str, np.ndarray], config: EncoderConfig,
                          model_dir: pathlib.Path) -> None:
  """Sets each mapped parameter from its checkpoint tensors, checking every shape."""
  for m in maps:
    param = _node(model, m.path)
    expected = _expected_hf_shape(param.get_value().shape, len(m.hf_names), m.transpose)
    for name in m.hf_names:
      if tensors[name].shape != expected:
        raise CheckpointError(f"{model_dir}: tensor {name!r} has shape {tensors[name].shape}, "
                              f"expected {expected} (for {'.'.join(map(str, m.path))})")
    parts = [tensors[n].T if m.transpose else tensors[n] for n in m.hf_names]
    param.set_value(jnp.asarray(np.concatenate(parts, axis=-1), dtype=config.parameter_dtype))


def _init_fresh_heads(model: nnx.Module, fresh: list[TensorMap], config: EncoderConfig,
                      seed: int) -> None:
  """Replaces each head Linear the checkpoint lacks by a new one initialized from `seed`."""
  rngs = nnx.Rngs(params=seed)
  for path in dict.fromkeys(m.path[:-1] for m in fresh):
    parent = _node(model, path[:-1])
    in_features, out_features = getattr(parent, path[-1]).kernel.get_value().shape
    setattr(parent, path[-1], dense(config, in_features, out_features, rngs=rngs))


def load_pretrained(model_dir: str | pathlib.Path, *, task: Task = "span",
                    num_layers: int | None = None, num_labels: int | None = None,
                    dtype: str | None = None, attention_dropout: float | None = None,
                    seed: int = 0) -> Loaded:
  """A Hugging Face model directory as our `task` module with its weights.

  Args:
    model_dir: local directory with config.json and weights.
    task: "base" (Encoder), "span" (SpanModel) or "classify" (SequenceClassifier).
    num_layers: keep only the first k layers (a cheaper expert from the same checkpoint).
    num_labels: classifier width; read from the checkpoint's classifier when it has one.
    dtype: compute dtype override ("float32" or "bfloat16").
    attention_dropout: attention-probability dropout override (0 lets GPUs train on
      fused attention, `models.attention`); None keeps the checkpoint's.
    seed: initializes heads the checkpoint lacks, and seeds dropout.
  Raises:
    CheckpointError: unsupported architecture, missing tensors or wrong shapes; for
      one of our rejector exports, a file that fails its export manifest.
  """
  model_dir = pathlib.Path(model_dir)
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
  if (model_dir / export_loader.MANIFEST_FILE).is_file():  # an export: check it before reading
    try:
      export_loader.verify_export(model_dir, required=("model.safetensors", "config.json"))
    except export_loader.ExportError as e:
      raise CheckpointError(str(e)) from None
  hf_config = read_hf_config(model_dir)
  try:
    overrides = {"dtype": dtype, "attention_dropout": attention_dropout}
    full_config = EncoderConfig.from_hf_config(
        hf_config, **{k: v for k, v in overrides.items() if v is not None})
  except ValueError as e:
    raise CheckpointError(f"{model_dir / 'config.json'}: {e}") from e
  config = full_config.truncated(num_layers) if num_layers else full_config
  tensors = _canonical_names(read_tensors(model_dir), config.family)

  maps = tensor_map(config, task)
  present_heads = {m.path[:-1] for m in maps if m.head and any(n in tensors for n in m.hf_names)}
  fresh = [m for m in maps if m.head and m.path[:-1] not in present_heads]
  missing = [n for m in maps if m not in fresh for n in m.hf_names if n not in tensors]
  if missing:
    raise CheckpointError(f"{model_dir}: checkpoint lacks {len(missing)} tensor(s) a "
                          f"{config.family} {task} model needs: {', '.join(missing)}")
  if task == "classify" and num_labels is None:
    classifier = next(m for m in maps if m.path == ("classifier", "kernel"))
    if classifier in fresh:
      raise CheckpointError(f"{model_dir} has no classifier head; pass num_labels "
                            "to start a fresh one")
    num_labels = tensors[classifier.hf_names[0]].shape[0]

  model = _abstract_model(config, task, num_labels)
  _fill_from_checkpoint(model, [m for m in maps if m not in fresh], tensors, config, model_dir)
  _init_fresh_heads(model, fresh, config, seed)
  nnx.reseed(model, dropout=seed)
  model.eval()

  used = {n for m in maps for n in m.hf_names}
  truncated_away = {n for m in tensor_map(full_config, task) for n in m.hf_names} - used
  dropped = tuple(sorted(n for n in tensors if n in truncated_away))
  unused = tuple(sorted(n for n in tensors if n not in used and n not in truncated_away
                        and n not in _BUFFERS))
  fresh_paths = tuple(".".join(map(str, m.path)) for m in fresh)
  if fresh_paths:
    logging.warning("%s: %s head initialized fresh (seed %d): %s", model_dir, task, seed,
                    ", ".join(fresh_paths))
  if unused:
    logging.info("%s: %d checkpoint tensor(s) unused by the %s model: %s", model_dir,
                 len(unused), task, ", ".join(unused))
  return Loaded(model, config, fresh_paths, unused, dropped)


def to_hf_state_dict(model: Encoder | SpanModel | SequenceClassifier) -> dict[str, np.ndarray]:
  """A BERT module's parameters under Hugging Face names (BertModel / *ForQuestionAnswering /
  BertForSequenceClassification), fp32, ready for safetensors."""
  config = model.config
  if config.family != "bert":
    raise ValueError(f"to_hf_state_dict writes BERT checkpoints only, not {config.family!r}")
  task = ("base" if isinstance(model, Encoder) else "span" if isinstance(model, SpanModel)
          else "classify")
  state = {}
  for m in tensor_map(config, task):
    value = np.asarray(_node(model, m.path).get_value(), dtype=np.float32)
    for name, part in zip(m.hf_names, np.split(value, len(m.hf_names), axis=-1)):
      key = f"bert.{name}" if task != "base" and m.in_base else name
      state[key] = np.ascontiguousarray(part.T if m.transpose else part)
  return state
