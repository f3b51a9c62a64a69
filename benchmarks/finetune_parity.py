"""Expert fine-tuning against PyTorch: the same weights, batches and optimizer, step by step.

Two checks on the expert_train articles of ../shared/data/squad:

1. Labels: our windows (`data.features`) against Hugging Face `run_qa.py`'s
   `prepare_train_features` with the same tokenizer, length and stride (token
   ids and start/end positions, window by window).
2. Training dynamics: all-MiniLM-L6-v2 truncated to `--layers`, dropout off,
   trained for `--steps` steps by `train.finetune.finetune` (our jitted step,
   AdamW, warmup + linear decay, clipping) and by transformers'
   `BertForQuestionAnswering` in torch with `torch.optim.AdamW`,
   `get_linear_schedule_with_warmup` and `clip_grad_norm_`, from the same
   initial weights (our fresh `qa_outputs` copied into torch) on the same
   batches in the same order. The per-step losses should agree to float
   tolerance. The torch side is tests/reference/torch_finetune.py; `--hf-loss`
   trains it with the model's own loss (its softmax includes padding
   positions; ours excludes them).

    python benchmarks/finetune_parity.py --layers 3 --steps 40 --batch-size 16 --max-seq-len 256
"""

import argparse
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "squad"
sys.path.insert(0, str(ROOT / "tests"))
from reference import torch_finetune  # noqa: E402  (the PyTorch side the tests check against)


def run_qa_labels(examples, tokenizer, max_seq_len: int, doc_stride: int):
  """Token ids and start/end positions as `run_qa.py`'s `prepare_train_features` makes them."""
  encoded = tokenizer([e.question.lstrip() for e in examples], [e.context for e in examples],
                      truncation="only_second", max_length=max_seq_len, stride=doc_stride,
                      return_overflowing_tokens=True, return_offsets_mapping=True,
                      padding="max_length")
  starts, ends = [], []
  for i, offsets in enumerate(encoded["offset_mapping"]):
    input_ids = encoded["input_ids"][i]
    cls_index = input_ids.index(tokenizer.cls_token_id)
    sequence_ids = encoded.sequence_ids(i)
    example = examples[encoded["overflow_to_sample_mapping"][i]]
    if not example.answers:
      starts.append(cls_index)
      ends.append(cls_index)
      continue
    start_char, end_char = example.answers[0].start, example.answers[0].end
    token_start = 0
    while sequence_ids[token_start] != 1:
      token_start += 1
    token_end = len(input_ids) - 1
    while sequence_ids[token_end] != 1:
      token_end -= 1
    if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
      starts.append(cls_index)
      ends.append(cls_index)
      continue
    while token_start < len(offsets) and offsets[token_start][0] <= start_char:
      token_start += 1
    starts.append(token_start - 1)
    while offsets[token_end][1] >= end_char:
      token_end -= 1
    ends.append(token_end + 1)
  return np.asarray(encoded["input_ids"]), np.asarray(starts), np.asarray(ends)


def compare_labels(examples, tokenizer, features, max_seq_len: int, doc_stride: int) -> dict:
  """How many windows and labels ours and run_qa's share (questions are under 64 tokens)."""
  ids_FxL, start_F, end_F = run_qa_labels(examples, tokenizer, max_seq_len, doc_stride)
  same_windows = ids_FxL.shape == features.input_ids_FxL.shape and bool(
      (ids_FxL == features.input_ids_FxL).all())
  result = {"windows_ours": int(features.num_features), "windows_run_qa": int(len(start_F)),
            "same_token_ids": same_windows}
  if len(start_F) == features.num_features:
    differ_F = (start_F != features.start_positions_F) | (end_F != features.end_positions_F)
    result.update(labels_differ=int(differ_F.sum()),
                  labelled_ours=int((features.start_positions_F > 0).sum()),
                  labelled_run_qa=int((start_F > 0).sum()),
                  differ_rows=np.flatnonzero(differ_F)[:10].tolist())
  return result


def disable_dropout(model) -> None:
  """Sets every dropout rate of our module to 0 (before it is split for training)."""
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from l2d_jax.models.dropout import Dropout  # pylint: disable=import-outside-toplevel
  for _, module in nnx.iter_modules(model):
    if isinstance(module, Dropout):
      module.rate = 0.0


def torch_losses(model_dir, layers: int, qa_kernel_Hx2, qa_bias_2, features, rows, steps: int,
                 optim, hf_loss: bool) -> list[float]:
  """Per-step losses of BertForQuestionAnswering (our initial head) on the same batches, in torch."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from l2d_jax.train.finetune import feature_batch  # pylint: disable=import-outside-toplevel
  model = transformers.BertForQuestionAnswering.from_pretrained(
      model_dir, num_hidden_layers=layers, hidden_dropout_prob=0.0,
      attention_probs_dropout_prob=0.0)
  with torch.no_grad():
    model.qa_outputs.weight.copy_(torch.from_numpy(np.asarray(qa_kernel_Hx2).T.copy()))
    model.qa_outputs.bias.copy_(torch.from_numpy(np.asarray(qa_bias_2).copy()))
  return torch_finetune.train_steps(
      torch, model, (feature_batch(features, rows(step)) for step in range(steps)), optim,
      total_steps=steps, hf_loss=hf_loss)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--layers", type=int, default=3)
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--max-seq-len", type=int, default=256)
  parser.add_argument("--learning-rate", type=float, default=1e-4)
  parser.add_argument("--hf-loss", action="store_true")
  parser.add_argument("--skip-labels", action="store_true")
  parser.add_argument("--out", default="")
  args = parser.parse_args()

  import torch  # pylint: disable=import-outside-toplevel
  from l2d_jax.data import feature_cache, squad
  from l2d_jax.data.features import FeatureParams
  from l2d_jax.data.tokenizer import load_tokenizer
  from l2d_jax.models import hf_import
  from l2d_jax.models.hub import resolve_model_dir
  from l2d_jax.train import finetune, loop
  from l2d_jax.train.optim import OptimConfig

  torch.set_num_threads(1)
  model_dir = resolve_model_dir("all-MiniLM-L6-v2")
  tokenizer = load_tokenizer(model_dir)
  params = FeatureParams(args.max_seq_len, args.max_seq_len // 3, 64)
  train = squad.read_split(SHARED / "dev-v1.1.json", SHARED / "splits.json", "expert_train")
  report = {"args": vars(args)}
  with tempfile.TemporaryDirectory() as tmp:
    features = feature_cache.cached_features(train.examples, tokenizer, params,
                                             pathlib.Path(tmp) / "cache")
    if not args.skip_labels:
      report["labels"] = compare_labels(train.examples, tokenizer, features, params.max_seq_len,
                                        params.doc_stride)
      print(json.dumps(report["labels"]))
    # Whole questions, in a fixed random order, until `steps` batches are full: one epoch of
    # them is the compared run, so warmup and the decay to 0 both happen within it.
    windows_E = np.bincount(features.example_index_F, minlength=features.num_examples)
    order_E = np.random.default_rng(0).permutation(features.num_examples)
    needed = args.steps * args.batch_size
    subset = features.select(order_E[:np.searchsorted(np.cumsum(windows_E[order_E]), needed) + 1])
    steps = loop.steps_per_epoch(subset.num_features, args.batch_size)
    optim = OptimConfig(learning_rate=args.learning_rate, warmup_fraction=0.1)
    loaded = hf_import.load_pretrained(model_dir, task="span", num_layers=args.layers)
    disable_dropout(loaded.model)
    qa_kernel = np.asarray(loaded.model.qa_outputs.kernel.get_value())
    qa_bias = np.asarray(loaded.model.qa_outputs.bias.get_value())
    settings = finetune.FinetuneSettings(epochs=1.0, batch_size=args.batch_size, optim=optim,
                                         progress=False)
    begin = time.perf_counter()
    finetune.finetune(loaded.model, subset, settings, workdir=pathlib.Path(tmp) / "ours")
    ours_s = time.perf_counter() - begin
    rows = [json.loads(line) for line in (pathlib.Path(tmp) / "ours" / "metrics.jsonl").open()]
    ours = [r["loss"] for r in rows if r["split"] == "train"]
    begin = time.perf_counter()
    theirs = torch_losses(model_dir, args.layers, qa_kernel, qa_bias, subset,
                          loop.epoch_batches(subset.num_features, args.batch_size, settings.seed),
                          steps, optim, args.hf_loss)
    torch_s = time.perf_counter() - begin
  diff = np.abs(np.asarray(ours) - np.asarray(theirs))
  report["training"] = {"steps": steps, "windows": int(subset.num_features),
                        "ours": ours, "torch": theirs, "max_abs_diff": float(diff.max()),
                        "max_rel_diff": float((diff / np.abs(theirs)).max()),
                        "ours_s": ours_s, "torch_s": torch_s}
  for step, (a, b) in enumerate(zip(ours, theirs)):
    print(f"step {step:3d}  ours {a:.6f}  torch {b:.6f}  diff {a - b:+.2e}")
  print(f"max |diff| {diff.max():.3e} over {steps} steps; ours {ours_s:.0f} s, torch {torch_s:.0f} s")
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
  main()
