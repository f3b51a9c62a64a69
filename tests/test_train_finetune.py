"""Expert fine-tuning: step-by-step parity with PyTorch's BertForQuestionAnswering, fresh dropout.

The PyTorch side is tests/reference/torch_finetune.py. The real-size check
(all-MiniLM-L6-v2, SQuAD windows) is `benchmarks/finetune_parity.py`; these use
a tiny BERT and random windows.
"""

import json

import numpy as np
import pytest
import safetensors.numpy
import transformers
from flax import nnx

from l2d_jax.data.features import FeatureParams, Features
from l2d_jax.models import hf_import
from l2d_jax.models.config import EncoderConfig
from l2d_jax.models.dropout import Dropout
from l2d_jax.models.heads import SpanModel
from l2d_jax.train import finetune, loop
from l2d_jax.train.optim import OptimConfig
from reference import torch_finetune

LENGTH = 12
TINY = EncoderConfig(family="bert", vocab_size=50, hidden_size=16, num_layers=2, num_heads=2,
                     intermediate_size=24, max_position_embeddings=32, hidden_dropout=0.2,
                     attention_dropout=0.2, initializer_range=0.2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  """A tiny BERT *ForQuestionAnswering checkpoint on disk, written without torch."""
  path = tmp_path_factory.mktemp("tiny_bert")
  model = SpanModel(TINY, rngs=nnx.Rngs(3))
  safetensors.numpy.save_file(hf_import.to_hf_state_dict(model), path / "model.safetensors",
                              metadata={"format": "pt"})
  (path / "config.json").write_text(json.dumps({**TINY.to_hf_config(),
                                                "architectures": ["BertForQuestionAnswering"]}))
  return path


def _features(num: int, seed: int = 0) -> Features:
  """`num` windows of random tokens, padded to LENGTH, whose span starts at a token 3 and ends
  at the next token 4 (something to learn)."""
  rng = np.random.default_rng(seed)
  lengths_F = rng.integers(6, LENGTH + 1, num)
  mask_FxL = (np.arange(LENGTH) < lengths_F[:, None]).astype(np.int32)
  ids_FxL = rng.integers(5, TINY.vocab_size, (num, LENGTH)) * mask_FxL
  types_FxL = ((np.arange(LENGTH) >= 4) & (mask_FxL > 0)).astype(np.int32)
  start_F = rng.integers(0, lengths_F - 2)
  end_F = start_F + rng.integers(1, 3, num)
  ids_FxL[np.arange(num), start_F] = 3
  ids_FxL[np.arange(num), end_F] = 4
  return Features(ids_FxL.astype(np.int32), types_FxL, mask_FxL,
                  np.full((num, LENGTH, 2), -1, np.int32), start_F.astype(np.int32),
                  end_F.astype(np.int32), np.arange(num, dtype=np.int32),
                  [str(i) for i in range(num)], FeatureParams(LENGTH, 2, 4))


def _losses(workdir) -> list[float]:
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").open()]
  return [row["loss"] for row in rows if row["split"] == "train"]


def test_training_matches_pytorch_step_by_step(checkpoint, tmp_path, torch):
  """Same weights, batches, AdamW (decay on matrices), warmup + linear decay and clipping:
  the losses of 10 steps (a padded last batch included) agree with torch's to float precision."""
  model = hf_import.load_pretrained(checkpoint, task="span").model
  for _, module in nnx.iter_modules(model):
    if isinstance(module, Dropout):
      module.rate = 0.0
  features = _features(77)  # 10 batches of 8 (one row per device), the last with 3 padding rows
  settings = finetune.FinetuneSettings(
      epochs=1.0, batch_size=8, progress=False,
      optim=OptimConfig(learning_rate=3e-3, warmup_fraction=0.2, clip_norm=0.5))
  reference = transformers.BertForQuestionAnswering.from_pretrained(
      checkpoint, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  with torch.no_grad():
    for name, value in hf_import.to_hf_state_dict(model).items():
      reference.state_dict()[name].copy_(torch.from_numpy(np.array(value)))
  rows = loop.epoch_batches(features.num_features, settings.batch_size, settings.seed)
  expected = torch_finetune.train_steps(
      torch, reference, (finetune.feature_batch(features, rows(step)) for step in range(10)),
      settings.optim, total_steps=10)
  finetune.finetune(model, features, settings, workdir=tmp_path)
  got = _losses(tmp_path)
  assert len(got) == 10
  assert np.mean(expected[-3:]) < np.mean(expected[:3]) - 0.2  # it learns, so equal losses mean equal updates
  np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)


def test_imported_model_draws_new_dropout_masks_every_step(checkpoint, tmp_path):
  """An imported checkpoint's dropout stream (named `dropout`, not `default`) is reseeded each
  step: with a zero learning rate and identical rows only the masks can change the loss."""
  model = hf_import.load_pretrained(checkpoint, task="span").model
  one = _features(1)
  features = Features(**{name: np.repeat(value, 8, axis=0) for name, value in one.arrays().items()
                         if name != "example_index_F"},
                      example_index_F=np.arange(8, dtype=np.int32),
                      example_ids=[str(i) for i in range(8)], params=one.params)
  settings = finetune.FinetuneSettings(epochs=4.0, batch_size=8, progress=False,
                                       optim=OptimConfig(learning_rate=0.0))
  finetune.finetune(model, features, settings, workdir=tmp_path / "a")
  losses = _losses(tmp_path / "a")
  assert len(set(losses)) == 4
  finetune.finetune(hf_import.load_pretrained(checkpoint, task="span").model, features, settings,
                    workdir=tmp_path / "b")
  assert _losses(tmp_path / "b") == losses  # the masks are a function of (seed, step)
