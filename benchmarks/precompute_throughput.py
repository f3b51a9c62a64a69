"""Precompute throughput of all-MiniLM-L6-v2 in JAX against Hugging Face transformers on PyTorch.

The check of issue 3: on real SQuAD dev windows (max_seq_len=384, doc_stride=128)
the jitted precompute forward pass (`agents.precompute.forward_fn`: span logits,
the best span of each window and the gold span's NLL, over the device mesh)
must process at least as many features per second on the CPU as
`transformers.BertForQuestionAnswering` with the same weights and inputs under
`torch.inference_mode()` (torch's default threads). Both run in this process,
batch by batch in alternation so that load from other processes hits them
alike, after a warm-up batch each. The span head is fresh (the checkpoint has
none) and copied into the PyTorch model, and the first batch's start logits
are compared, so both really compute the same function. On a GPU the script
also prints the fraction of the chip's peak FLOP/s, from the analytic FLOPs of
`models.flops`.

`--components` (CPU only) then times one encoder layer's parts alone on the
first batch's shapes, fp32, the two frameworks' calls alternating: the four
dense products (query/key/value as one fused product in both, as our encoder
computes it; Hugging Face's BERT makes three), attention output, feed-forward
up and down, and the softmax attention between them (the encoder's CPU path,
`attention.attention_per_example`, against `scaled_dot_product_attention` with
the same padding mask). It shows where the gap of the whole forward pass lives.

  python benchmarks/precompute_throughput.py [--num-features 512] [--batch-size 32] [--components]
"""

import argparse
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from l2d_jax.agents.precompute import forward_fn
from l2d_jax.data import features as features_lib
from l2d_jax.data import squad
from l2d_jax.data import tokenizer as tokenizer_lib
from l2d_jax.models import flops as flops_lib
from l2d_jax.models import hub
from l2d_jax.models.attention import attention_per_example
from l2d_jax.models.hf_import import load_pretrained
from l2d_jax.train import mesh as mesh_lib
from l2d_jax.train.finetune import MODEL_INPUTS

_DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared/data/squad/dev-v1.1.json"
_RATIO_TARGET = 1.0
# Dense bf16 tensor-core peak FLOP/s by `device_kind` prefix (vendor data sheets, SXM parts).
_PEAK_BF16_FLOPS = {"NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100": 312e12}
_BATCH_FIELDS = (*MODEL_INPUTS, "offsets_FxLx2", "start_positions_F", "end_positions_F")


def first_features(data_path: str, tokenizer, params: features_lib.FeatureParams,
                   num_features: int) -> dict[str, np.ndarray]:
  """The model inputs and labels of the first `num_features` windows of the file's questions."""
  examples = squad.read_squad(data_path).examples
  if not examples:
    raise ValueError(f"{data_path} holds no questions")
  # Every question has at least one window, so this many questions are enough.
  features = features_lib.make_features(examples[:num_features], tokenizer, params)
  if features.num_features < num_features:
    raise ValueError(f"{data_path} yields only {features.num_features} features")
  return {name: getattr(features, name)[:num_features]
          for name in (*_BATCH_FIELDS, "example_index_F")}


def peak_flops(device: jax.Device) -> float | None:
  """The device's dense bf16 peak FLOP/s, or None when it is not in the table."""
  kind = getattr(device, "device_kind", "")
  return next((peak for prefix, peak in _PEAK_BF16_FLOPS.items() if kind.startswith(prefix)),
              None)


def torch_peer(model_dir: pathlib.Path, jax_model) -> torch.nn.Module:
  """BertForQuestionAnswering from the same directory, with the JAX model's (fresh) span head."""
  model = transformers.BertForQuestionAnswering.from_pretrained(str(model_dir))
  with torch.no_grad():
    model.qa_outputs.weight.copy_(torch.from_numpy(
        np.asarray(jax_model.qa_outputs.kernel.get_value()).T.copy()))
    model.qa_outputs.bias.copy_(torch.from_numpy(
        np.asarray(jax_model.qa_outputs.bias.get_value()).copy()))
  return model.eval()


def _seconds(runs: dict, repeats: int) -> dict[str, float]:
  """Mean wall seconds per call of each of `runs` (name -> callable), calls alternating.

  Each is called once to warm up, then `repeats` rounds call each in turn, so
  that load from other processes hits them alike.
  """
  seconds = dict.fromkeys(runs, 0.0)
  for run in runs.values():
    run()
  for _ in range(repeats):
    for name, run in runs.items():
      begin = time.perf_counter()
      run()
      seconds[name] += time.perf_counter() - begin
  return {name: total / repeats for name, total in seconds.items()}


def time_components(config, attention_mask_BxL: np.ndarray, repeats: int = 5) -> None:
  """Prints one layer's dense products and attention, JAX against PyTorch, on the same inputs."""
  batch, length = attention_mask_BxL.shape
  hidden, inner, heads = config.hidden_size, config.intermediate_size, config.num_heads
  rng = np.random.default_rng(0)
  rows = batch * length
  products = {"query/key/value": (hidden, 3 * hidden), "attention output": (hidden, hidden),
              "feed-forward up": (hidden, inner), "feed-forward down": (inner, hidden)}
  matmul = jax.jit(lambda x, w: x @ w)
  totals = {"jax": 0.0, "torch": 0.0}
  print(f"one layer's parts at batch {batch} x {length} tokens (ms, GFLOP/s):")
  for name, (fan_in, fan_out) in products.items():
    x = rng.standard_normal((rows, fan_in), dtype=np.float32)
    w = rng.standard_normal((fan_in, fan_out), dtype=np.float32)
    x_jax, w_jax = jnp.asarray(x), jnp.asarray(w)
    x_torch, w_torch = torch.from_numpy(x), torch.from_numpy(w.T.copy())
    with torch.inference_mode():
      seconds = _seconds({"jax": lambda: matmul(x_jax, w_jax).block_until_ready(),
                          "torch": lambda: torch.nn.functional.linear(x_torch, w_torch)},
                         repeats)
    gflop = 2 * rows * fan_in * fan_out / 1e9
    _print_part(name, seconds, gflop, totals)
  shape = (batch, length, heads, hidden // heads)
  q, k, v = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
  mask_Bx1x1xL = attention_mask_BxL.astype(bool)[:, None, None, :]
  attend = jax.jit(attention_per_example)
  args_jax = [jnp.asarray(a) for a in (q, k, v, attention_mask_BxL.sum(axis=1))]
  qkv_torch = [torch.from_numpy(a.transpose(0, 2, 1, 3).copy()) for a in (q, k, v)]
  mask_torch = torch.from_numpy(mask_Bx1x1xL)
  with torch.inference_mode():
    seconds = _seconds({"jax": lambda: attend(*args_jax).block_until_ready(),
                        "torch": lambda: torch.nn.functional.scaled_dot_product_attention(
                            *qkv_torch, attn_mask=mask_torch)}, repeats)
  _print_part("softmax attention", seconds, 4 * batch * length * length * hidden / 1e9, totals)
  print(f"  {'sum of the parts':<18} JAX {totals['jax'] * 1e3:7.1f}   PyTorch "
        f"{totals['torch'] * 1e3:7.1f}   ({config.num_layers} layers: "
        f"{config.num_layers * totals['jax']:.2f} s against "
        f"{config.num_layers * totals['torch']:.2f} s per batch)")


def _print_part(name: str, seconds: dict[str, float], gflop: float,
                totals: dict[str, float]) -> None:
  for framework, value in seconds.items():
    totals[framework] += value
  print(f"  {name:<18} JAX {seconds['jax'] * 1e3:7.1f} ({gflop / seconds['jax']:5.1f})   "
        f"PyTorch {seconds['torch'] * 1e3:7.1f} ({gflop / seconds['torch']:5.1f})")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default=str(_DEFAULT_DATA), help="SQuAD JSON file")
  parser.add_argument("--model", default="all-MiniLM-L6-v2")
  parser.add_argument("--num-features", type=int, default=512)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--max-seq-len", type=int, default=384)
  parser.add_argument("--doc-stride", type=int, default=128)
  parser.add_argument("--max-answer-len", type=int, default=30)
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="JAX compute dtype (PyTorch runs fp32)")
  parser.add_argument("--components", action="store_true",
                      help="also time one layer's dense products and attention alone")
  args = parser.parse_args(argv)
  if not pathlib.Path(args.data).exists():
    print(f"data not found: {args.data}", file=sys.stderr)
    return 2
  if args.components and jax.default_backend() != "cpu":
    print("--components times the CPU path; JAX is not on the CPU", file=sys.stderr)
    return 2
  if args.num_features < args.batch_size:
    print("--num-features must be at least --batch-size", file=sys.stderr)
    return 2

  model_dir = hub.resolve_model_dir(args.model)
  params = features_lib.FeatureParams(args.max_seq_len, args.doc_stride)
  arrays = first_features(args.data, tokenizer_lib.load_tokenizer(model_dir), params,
                          args.num_features)
  example_index_F = arrays.pop("example_index_F")
  batches = [{name: array[lo:lo + args.batch_size] for name, array in arrays.items()}
             for lo in range(0, args.num_features - args.batch_size + 1, args.batch_size)]
  timed_features = len(batches) * args.batch_size
  num_questions = int(example_index_F[timed_features - 1]) + 1

  loaded = load_pretrained(model_dir, task="span", dtype=args.dtype)
  mesh = mesh_lib.make_mesh()
  forward = forward_fn(loaded.model, mesh, args.max_answer_len)
  peer = torch_peer(model_dir, loaded.model)

  def run_jax(batch):
    return jax.block_until_ready(forward(mesh_lib.shard_batch(mesh, batch)))

  def run_torch(batch):
    with torch.inference_mode():
      return peer(**{name: torch.from_numpy(batch[f"{name}_FxL"].astype(np.int64))
                     for name in ("input_ids", "attention_mask", "token_type_ids")})

  # Warm-up (compilation, allocator, thread pools) and a check that both compute the same.
  jax_start_BxL = np.asarray(run_jax(batches[0])["logits_Fx2xL"][:, 0])
  torch_start_BxL = run_torch(batches[0]).start_logits.numpy()
  max_diff = float(np.abs(jax_start_BxL - torch_start_BxL).max())

  load_before = os.getloadavg()[0]
  seconds = {"jax": 0.0, "torch": 0.0}
  for i, batch in enumerate(batches):
    order = (("jax", run_jax), ("torch", run_torch))
    for name, run in order if i % 2 == 0 else order[::-1]:
      begin = time.perf_counter()
      run(batch)
      seconds[name] += time.perf_counter() - begin
  load_after = os.getloadavg()[0]
  rate = {name: timed_features / s for name, s in seconds.items()}
  ratio = rate["jax"] / rate["torch"]
  flops_per_feature = flops_lib.forward_flops(loaded.config, args.max_seq_len, task="span")

  device = jax.devices()[0]
  print(f"model: {args.model} ({loaded.config.num_layers} layers, hidden "
        f"{loaded.config.hidden_size}); data: {args.data}")
  print(f"features: {timed_features} windows of {num_questions} questions timed in "
        f"{len(batches)} batches of {args.batch_size}; max_seq_len {args.max_seq_len}, "
        f"doc_stride {args.doc_stride}")
  print(f"machine: {os.cpu_count()} CPU cores, load average {load_before:.1f} before and "
        f"{load_after:.1f} after timing")
  print(f"JAX {jax.__version__} on {device.platform} ({device.device_kind}), mesh of "
        f"{mesh.size}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads, attention "
        f"{peer.config._attn_implementation}")  # pylint: disable=protected-access
  print(f"first batch start logits, JAX vs PyTorch: max |diff| = {max_diff:.2e}")
  print(f"analytic FLOPs per feature: {flops_per_feature / 1e9:.2f} GFLOP")
  for name, label in (("jax", f"JAX forward_fn ({args.dtype})"),
                      ("torch", "PyTorch BertForQuestionAnswering (float32)")):
    print(f"{label}: {rate[name]:.1f} features/s "
          f"({rate[name] * flops_per_feature / 1e9:.1f} GFLOP/s)")
  verdict = "met" if ratio >= _RATIO_TARGET else "MISSED"
  print(f"ratio JAX / PyTorch: {ratio:.2f}x (target >= {_RATIO_TARGET:.1f}x on the CPU: "
        f"{verdict if device.platform == 'cpu' else 'n/a, JAX is not on the CPU'})")
  if device.platform == "gpu":
    peak = peak_flops(device)
    fraction = ("unknown" if peak is None
                else f"{rate['jax'] * flops_per_feature / peak:.1%} of {peak / 1e12:.0f} TFLOP/s")
    print(f"GPU {device.device_kind}: {rate['jax']:.1f} features/s ({args.dtype}), fraction of "
          f"the bf16 dense peak: {fraction}")
  if args.components:
    time_components(loaded.config, batches[0]["attention_mask_FxL"])
  return 0


if __name__ == "__main__":
  sys.exit(main())
