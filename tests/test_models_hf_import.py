"""Checkpoint import: PyTorch parity, truncation, fresh heads, errors, BERT export round trip."""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import transformers

from l2d_jax.models import hf_import
from l2d_jax.models.hf_import import CheckpointError, load_pretrained, to_hf_state_dict
from l2d_jax.models.hub import resolve_model_dir

COMMON = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=37, max_position_embeddings=64,
              initializer_range=0.2)  # large weights: logits of order 1, so 1e-4 is strict
HF_CONFIGS = {
    "bert": lambda **kw: transformers.BertConfig(**COMMON, **kw),
    "roberta": lambda **kw: transformers.RobertaConfig(**COMMON, type_vocab_size=1, **kw),
    "distilbert": lambda **kw: transformers.DistilBertConfig(
        vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64,
        initializer_range=0.2, **kw),
    # Two groups of two layers each: exercises ALBERT's sharing schedule.
    "albert": lambda **kw: transformers.AlbertConfig(
        **COMMON, embedding_size=16, num_hidden_groups=2, inner_group_num=2, **kw),
    "electra": lambda **kw: transformers.ElectraConfig(**COMMON, embedding_size=16, **kw),
}
AUTO_CLASSES = {"span": "AutoModelForQuestionAnswering",
                "classify": "AutoModelForSequenceClassification", "base": "AutoModel"}


@pytest.fixture(scope="module")
def checkpoint(torch, tmp_path_factory):
  """(directory, torch model) of a seeded tiny random HF model, saved once per module."""
  cache = {}

  def make(family: str, task: str):
    if (family, task) not in cache:
      torch.manual_seed(0)
      config = HF_CONFIGS[family](**({"num_labels": 3} if task == "classify" else {}))
      model = getattr(transformers, AUTO_CLASSES[task]).from_config(config).eval()
      path = tmp_path_factory.mktemp(f"{family}_{task}")
      model.save_pretrained(path)
      cache[family, task] = path, model
    return cache[family, task]
  return make


def _inputs(family: str) -> dict[str, np.ndarray]:
  """Two sequences, the second padded (with the family's pad id), with segment ids if used."""
  ids = np.random.RandomState(1).randint(3, 99, (2, 10))
  mask = np.ones((2, 10), np.int64)
  mask[1, 6:] = 0
  ids[1, 6:] = 1 if family == "roberta" else 0
  inputs = {"input_ids": ids, "attention_mask": mask}
  if family in ("bert", "albert", "electra"):
    inputs["token_type_ids"] = np.asarray([[0] * 5 + [1] * 5, [0] * 3 + [1] * 7])
  return inputs


def _torch_outputs(torch, model, inputs: dict[str, np.ndarray]):
  with torch.inference_mode():
    return model(**{k: torch.from_numpy(v) for k, v in inputs.items()})


def _ours(model, inputs: dict[str, np.ndarray]):
  """Our model on the same inputs, run eagerly: the tiny models share their op-by-op
  compilations, which is cheaper here than one jit compilation per model."""
  names = ("input_ids", "attention_mask", "token_type_ids")
  return model(*(jnp.asarray(inputs[k]) for k in names if k in inputs))


@pytest.mark.parametrize("family", sorted(HF_CONFIGS))
def test_span_logits_match_pytorch(torch, checkpoint, family):
  path, reference = checkpoint(family, "span")
  loaded = load_pretrained(path, task="span")
  assert (loaded.fresh, loaded.unused, loaded.dropped) == ((), (), ())
  inputs = _inputs(family)
  expected = _torch_outputs(torch, reference, inputs)
  start, end = _ours(loaded.model, inputs)
  assert np.abs(expected.start_logits.numpy()).max() > 0.3
  np.testing.assert_allclose(start, expected.start_logits.numpy(), atol=1e-4)
  np.testing.assert_allclose(end, expected.end_logits.numpy(), atol=1e-4)


@pytest.mark.parametrize("family", sorted(HF_CONFIGS))
def test_classifier_logits_match_pytorch(torch, checkpoint, family):
  path, reference = checkpoint(family, "classify")
  loaded = load_pretrained(path, task="classify")
  assert loaded.model.num_labels == 3 and loaded.fresh == ()
  inputs = _inputs(family)
  np.testing.assert_allclose(_ours(loaded.model, inputs),
                             _torch_outputs(torch, reference, inputs).logits.numpy(), atol=1e-4)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_truncation_matches_hf_with_fewer_layers(torch, checkpoint, family):
  path, _ = checkpoint(family, "span")
  layers_key = "n_layers" if family == "distilbert" else "num_hidden_layers"
  reference = transformers.AutoModelForQuestionAnswering.from_pretrained(
      path, **{layers_key: 1}).eval()
  loaded = load_pretrained(path, task="span", num_layers=1)
  assert loaded.config.num_layers == 1 and len(loaded.model.encoder.layers) == 1
  layer_1 = "transformer.layer.1." if family == "distilbert" else "encoder.layer.1."
  assert loaded.dropped and all(name.startswith(layer_1) for name in loaded.dropped)
  assert len(loaded.dropped) == 16 and loaded.unused == ()
  inputs = _inputs(family)
  start, end = _ours(loaded.model, inputs)
  expected = _torch_outputs(torch, reference, inputs)
  np.testing.assert_allclose(start, expected.start_logits.numpy(), atol=1e-4)
  np.testing.assert_allclose(end, expected.end_logits.numpy(), atol=1e-4)


def test_minilm_hidden_states_match_pytorch(torch):
  model_dir = resolve_model_dir("all-MiniLM-L6-v2")
  tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
  inputs = dict(tokenizer(["Which river flows through Paris?",
                           "The Seine flows through Paris and reaches the English Channel at "
                           "Le Havre."], padding=True, return_tensors="np"))
  assert inputs["attention_mask"][0].min() == 0  # the first sentence is padded
  reference = transformers.BertModel.from_pretrained(model_dir).eval()
  expected = _torch_outputs(torch, reference, inputs).last_hidden_state.numpy()
  loaded = load_pretrained(model_dir, task="base")
  assert loaded.fresh == () and loaded.unused == ("pooler.dense.bias", "pooler.dense.weight")
  np.testing.assert_allclose(_ours(loaded.model, inputs), expected, atol=1e-4)


def test_fresh_span_head_is_seeded_and_the_encoder_imported(torch, checkpoint):
  path, base = checkpoint("bert", "base")
  first = load_pretrained(path, task="span", seed=0)
  assert first.fresh == ("qa_outputs.kernel", "qa_outputs.bias")
  assert first.unused == ("pooler.dense.bias", "pooler.dense.weight")
  again, other = load_pretrained(path, task="span", seed=0), load_pretrained(path, seed=1)
  kernel = lambda loaded: np.asarray(loaded.model.qa_outputs.kernel[...])  # noqa: E731
  np.testing.assert_array_equal(kernel(first), kernel(again))
  assert not np.allclose(kernel(first), kernel(other))
  inputs = _inputs("bert")
  np.testing.assert_allclose(_ours(first.model.encoder, inputs),
                             _torch_outputs(torch, base, inputs).last_hidden_state.numpy(),
                             atol=1e-4)


def test_classifier_from_a_base_model_keeps_its_pooler(checkpoint):
  path, base = checkpoint("bert", "base")
  with pytest.raises(CheckpointError, match="has no classifier head; pass num_labels"):
    load_pretrained(path, task="classify")
  loaded = load_pretrained(path, task="classify", num_labels=4)
  assert loaded.fresh == ("classifier.kernel", "classifier.bias") and loaded.unused == ()
  np.testing.assert_array_equal(loaded.model.pooler.dense.kernel[...],
                                base.pooler.dense.weight.detach().numpy().T)


def test_pytorch_bin_loads_like_safetensors(torch, checkpoint, tmp_path):
  path, reference = checkpoint("electra", "span")
  shutil.copy(path / "config.json", tmp_path / "config.json")
  torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin")
  from_bin = hf_import.read_tensors(tmp_path)
  from_safetensors = hf_import.read_tensors(path)
  assert sorted(from_bin) == sorted(from_safetensors)
  for name, value in from_safetensors.items():
    np.testing.assert_array_equal(from_bin[name], value, err_msg=name)
  assert load_pretrained(tmp_path).fresh == ()


def _rewrite(src, dst, edit) -> None:
  """Copies a checkpoint directory, passing its tensors through `edit`."""
  shutil.copytree(src, dst)
  tensors = safetensors.numpy.load_file(dst / "model.safetensors")
  safetensors.numpy.save_file(edit(tensors), dst / "model.safetensors")


def test_wrong_shape_is_an_error_naming_the_tensor(checkpoint, tmp_path):
  path, _ = checkpoint("bert", "span")
  name = "bert.encoder.layer.1.attention.self.key.weight"
  _rewrite(path, tmp_path / "bad", lambda t: {**t, name: t[name][:, :30].copy()})
  with pytest.raises(CheckpointError, match=r"tensor 'encoder.layer.1.attention.self.key.weight' "
                     r"has shape \(32, 30\), expected \(32, 32\)"):
    load_pretrained(tmp_path / "bad")


def test_missing_encoder_tensor_is_an_error(checkpoint, tmp_path):
  path, _ = checkpoint("distilbert", "span")
  name = "distilbert.transformer.layer.0.ffn.lin2.bias"
  _rewrite(path, tmp_path / "bad", lambda t: {k: v for k, v in t.items() if k != name})
  with pytest.raises(CheckpointError, match=r"lacks 1 tensor\(s\) a distilbert span model needs: "
                     r"transformer.layer.0.ffn.lin2.bias"):
    load_pretrained(tmp_path / "bad")


def test_half_a_head_is_an_error_not_a_fresh_head(checkpoint, tmp_path):
  path, _ = checkpoint("bert", "span")
  _rewrite(path, tmp_path / "bad", lambda t: {k: v for k, v in t.items() if k != "qa_outputs.bias"})
  with pytest.raises(CheckpointError, match=r"lacks 1 tensor\(s\) a bert span model needs: "
                     r"qa_outputs.bias$"):
    load_pretrained(tmp_path / "bad")


def test_unsupported_architecture_is_an_error(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps(
      {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
  with pytest.raises(CheckpointError, match=r"config.json: unsupported architecture "
                     r"GPT2LMHeadModel \(model_type 'gpt2'\); supported model types: albert, bert, "
                     r"distilbert, electra, roberta"):
    load_pretrained(tmp_path)


def test_missing_weights_file_is_an_error(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps(transformers.BertConfig(**COMMON).to_dict()))
  with pytest.raises(CheckpointError, match="has no model.safetensors"):
    load_pretrained(tmp_path)


@pytest.mark.parametrize("task", ["classify", "span", "base"])
def test_bert_state_dict_round_trip(torch, checkpoint, task):
  path, reference = checkpoint("bert", task)
  exported = to_hf_state_dict(load_pretrained(path, task=task).model)
  expected = {k: v.numpy() for k, v in reference.state_dict().items()}
  if task == "base":  # our Encoder has no pooler
    expected = {k: v for k, v in expected.items() if not k.startswith("pooler.")}
  assert sorted(exported) == sorted(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(exported[name], value, err_msg=name)


def test_exported_classifier_runs_in_pytorch(torch, checkpoint):
  """A fresh-headed classifier written back is a valid BertForSequenceClassification."""
  path, _ = checkpoint("bert", "base")
  loaded = load_pretrained(path, task="classify", num_labels=4, seed=5)
  hf_config = transformers.BertConfig(**loaded.config.to_hf_config(), num_labels=4)
  model = transformers.BertForSequenceClassification(hf_config).eval()
  model.load_state_dict({k: torch.tensor(v) for k, v in
                         to_hf_state_dict(loaded.model).items()}, strict=True)
  inputs = _inputs("bert")
  np.testing.assert_allclose(_ours(loaded.model, inputs),
                             _torch_outputs(torch, model, inputs).logits.numpy(), atol=1e-4)


def test_bf16_compute_stays_close_to_pytorch(torch, checkpoint):
  path, reference = checkpoint("bert", "span")
  loaded = load_pretrained(path, task="span", dtype="bfloat16")
  inputs = _inputs("bert")
  start, _ = _ours(loaded.model, inputs)
  expected = _torch_outputs(torch, reference, inputs).start_logits.numpy()
  error = np.abs(np.asarray(start) - expected).max()
  assert 0 < error < 0.05 * np.abs(expected).max()
