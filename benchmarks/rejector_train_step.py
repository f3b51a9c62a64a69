"""Rejector train-step throughput in JAX against a PyTorch eager reference of the same model.

The check of issue 4: a 4-layer, hidden-312, 12-head, intermediate-1200 BERT
encoder at `max_seq_len=384` with a (J+1)-way head, trained with the comp-sum
surrogate (u = 1) and AdamW, must train at least 1.2x as many examples per
second on the CPU as `transformers.BertForSequenceClassification` of the same
size with the same surrogate written in torch and `torch.optim.AdamW` (torch's
default threads). Ours is the library's step: `text_rejector("scratch")` and
`Trainable.make_step(rejector_loss(...))`, jitted over a mesh of all local
devices with the state donated. Both see the same random full-length batches
and random costs, both train with dropout 0.1 (train mode), both clip the
gradient norm to 1 and follow the same warmup + linear decay. Timed steps
alternate between the two (order flipped every step) so that load from other
processes hits both alike; the torch surrogate is checked once against
`surrogate.mean_comp_sum_loss` on the same logits and costs. On a GPU the script also prints our examples/s and the
fraction of the chip's peak bf16 FLOP/s (forward + backward taken as 3x the
analytic forward FLOPs of `models.flops`).

  python benchmarks/rejector_train_step.py [--batch-size 16] [--steps 8] [--bf16]
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from l2d_jax.defer import surrogate
from l2d_jax.models import flops as flops_lib
from l2d_jax.train import mesh as mesh_lib
from l2d_jax.train.optim import OptimConfig, learning_rate_schedule, make_optimizer
from l2d_jax.rejector.text import text_rejector
from l2d_jax.train.rejector import CostSpec, rejector_loss
from l2d_jax.train.state import Trainable

_RATIO_TARGET = 1.2
# Dense bf16 tensor-core peak FLOP/s by `device_kind` prefix (vendor data sheets, SXM parts).
_PEAK_BF16_FLOPS = {"NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100": 312e12}
_DROPOUT = 0.1


def random_batches(num_batches: int, batch_size: int, seq_len: int, vocab_size: int,
                   num_agents: int, seed: int) -> list[dict[str, np.ndarray]]:
  """Full-length token windows (question segment, then context) with random agent scores."""
  rng = np.random.default_rng(seed)
  batches = []
  for _ in range(num_batches):
    token_type_ids_BxL = np.zeros((batch_size, seq_len), np.int32)
    token_type_ids_BxL[:, seq_len // 6:] = 1
    batches.append({
        "input_ids": rng.integers(1000, vocab_size, (batch_size, seq_len), dtype=np.int32),
        "attention_mask": np.ones((batch_size, seq_len), np.int32),
        "token_type_ids": token_type_ids_BxL,
        "em": (rng.random((batch_size, num_agents)) < 0.6).astype(np.float32),
        "f1": rng.random((batch_size, num_agents), dtype=np.float32),
        "span_nll": rng.exponential(2.0, (batch_size, num_agents)).astype(np.float32),
        "weight": np.ones(batch_size, np.float32),
    })
  return batches


def torch_comp_sum_loss(logits_BxJ: torch.Tensor, costs_BxJ: torch.Tensor) -> torch.Tensor:
  """The comp-sum surrogate for u = 1, batch mean: `sum_j tau_j * -log_softmax_j(r)`.

  `tau_j = sum_{i != j} c_i`; the costs are data, so no gradient reaches them.
  """
  costs_BxJ = costs_BxJ.detach()
  tau_BxJ = costs_BxJ.sum(dim=-1, keepdim=True) - costs_BxJ
  return (tau_BxJ * -torch.log_softmax(logits_BxJ, dim=-1)).sum(dim=-1).mean()


def surrogate_max_diff(num_agents: int, seed: int) -> float:
  """Largest |torch - ours| of the u = 1 batch loss over a few random logit/cost draws."""
  rng = np.random.default_rng(seed)
  worst = 0.0
  for scale in (1.0, 10.0, 100.0):
    logits_BxJ = (scale * rng.standard_normal((64, num_agents))).astype(np.float32)
    costs_BxJ = rng.random((64, num_agents), dtype=np.float32)
    ours = float(surrogate.mean_comp_sum_loss(jnp.asarray(logits_BxJ), jnp.asarray(costs_BxJ),
                                              1.0))
    theirs = float(torch_comp_sum_loss(torch.from_numpy(logits_BxJ),
                                       torch.from_numpy(costs_BxJ)))
    worst = max(worst, abs(ours - theirs) / max(abs(ours), 1.0))
  return worst


class TorchTrainer:
  """BertForSequenceClassification trained as the rejector is: comp-sum, AdamW, clip, schedule.

  On `device` (a CUDA GPU or the CPU), optionally under bf16 autocast and
  `torch.compile` (of the model's forward); `attention_dropout` is its
  attention-probability dropout (hidden dropout is always `_DROPOUT`).
  """

  def __init__(self, args: argparse.Namespace, optim: OptimConfig, spec: CostSpec,
               total_steps: int, *, device: str = "cpu", autocast: bool = False,
               attention_dropout: float = _DROPOUT, compile_model: bool = False):
    torch.manual_seed(args.seed)
    config = transformers.BertConfig(
        vocab_size=args.vocab_size, hidden_size=args.hidden_size, num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads, intermediate_size=args.intermediate_size,
        max_position_embeddings=max(512, args.max_seq_len), num_labels=args.num_agents,
        hidden_dropout_prob=_DROPOUT, attention_probs_dropout_prob=attention_dropout,
        attn_implementation=args.torch_attention)
    self.device = torch.device(device)
    self.model = transformers.BertForSequenceClassification(config).to(self.device).train()
    self.forward = torch.compile(self.model) if compile_model else self.model
    self.autocast = autocast
    matrices = [p for p in self.model.parameters() if p.ndim > 1]
    vectors = [p for p in self.model.parameters() if p.ndim <= 1]
    self.optimizer = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": optim.weight_decay},
         {"params": vectors, "weight_decay": 0.0}],
        lr=optim.learning_rate, betas=(optim.b1, optim.b2), eps=optim.eps)
    schedule = learning_rate_schedule(optim, total_steps)
    self.scheduler = torch.optim.lr_scheduler.LambdaLR(
        self.optimizer, lambda step: float(schedule(step)) / optim.learning_rate)
    self.clip_norm = optim.clip_norm
    self.spec = spec

  def to_device(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The model inputs and the batch's costs as tensors on the trainer's device."""
    alpha_J = np.asarray(self.spec.alpha_J, np.float32)
    beta_J = np.asarray(self.spec.beta_J, np.float32)
    tensors = {k: torch.from_numpy(batch[k].astype(np.int64)).to(self.device)
               for k in ("input_ids", "attention_mask", "token_type_ids")}
    tensors["costs"] = torch.from_numpy(alpha_J * (1.0 - batch["f1"]) + beta_J).to(self.device)
    return tensors

  def step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One training step on a `to_device` batch; returns the loss (a device tensor)."""
    inputs = {k: v for k, v in batch.items() if k != "costs"}
    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
      logits_BxJ = self.forward(**inputs).logits
    loss = torch_comp_sum_loss(logits_BxJ.float(), batch["costs"])
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
    self.optimizer.step()
    self.scheduler.step()
    return loss


def peak_flops(device: jax.Device) -> float | None:
  """The device's dense bf16 peak FLOP/s, or None when it is not in the table."""
  kind = getattr(device, "device_kind", "")
  return next((peak for prefix, peak in _PEAK_BF16_FLOPS.items() if kind.startswith(prefix)),
              None)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch-size", type=int, default=16, help="examples per train step")
  parser.add_argument("--steps", type=int, default=8, help="timed steps of each framework")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each first")
  parser.add_argument("--num-layers", type=int, default=4)
  parser.add_argument("--hidden-size", type=int, default=312)
  parser.add_argument("--num-heads", type=int, default=12)
  parser.add_argument("--intermediate-size", type=int, default=1200)
  parser.add_argument("--max-seq-len", type=int, default=384)
  parser.add_argument("--vocab-size", type=int, default=30522)
  parser.add_argument("--num-agents", type=int, default=4, help="J + 1, the head's width")
  parser.add_argument("--bf16", action="store_true", help="bf16 compute for ours (torch fp32)")
  parser.add_argument("--torch-attention", default="sdpa", choices=("sdpa", "eager"),
                      help="transformers attention implementation of the reference")
  parser.add_argument("--skip-torch", action="store_true",
                      help="time ours alone (e.g. on a GPU, where the CPU reference means little)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.steps < 1 or args.warmup < 1:
    print("--steps and --warmup must be at least 1", file=sys.stderr)
    return 2

  total_steps = args.warmup + args.steps
  rng = np.random.default_rng(args.seed)
  # The torch peer forms the same 1 - F1 costs in NumPy (TorchTrainer.to_device).
  spec = CostSpec("1-f1", (1.0,) * args.num_agents,
                  tuple(float(b) for b in rng.uniform(0.0, 0.5, args.num_agents)))
  optim = OptimConfig(learning_rate=1e-4)
  batches = random_batches(4, args.batch_size, args.max_seq_len, args.vocab_size,
                           args.num_agents, args.seed)

  dtype = "bfloat16" if args.bf16 else "float32"
  model = text_rejector("scratch", args.num_agents, vocab_size=args.vocab_size,
                        num_layers=args.num_layers, hidden_size=args.hidden_size,
                        num_heads=args.num_heads, intermediate_size=args.intermediate_size,
                        max_seq_len=args.max_seq_len, compute_dtype=dtype, seed=args.seed)
  config = model.sources[0].config
  mesh = mesh_lib.make_mesh()
  trainable = Trainable(model, make_optimizer(optim, total_steps), mesh, args.seed)
  train_step = trainable.make_step(rejector_loss(spec, u=1.0))
  state = trainable.state

  def run_jax(batch):
    nonlocal state
    state, metrics = train_step(state, mesh_lib.shard_batch(mesh, batch))
    return float(jax.block_until_ready(metrics["loss"]))

  peer = None if args.skip_torch else TorchTrainer(args, optim, spec, total_steps)
  runners = {"jax": run_jax}
  if peer is not None:
    torch_batches = {id(b): peer.to_device(b) for b in batches}
    runners["torch"] = lambda batch: peer.step(torch_batches[id(batch)]).item()

  # Warm-up: compilation, allocators, thread pools.
  warmup_seconds, first_loss = {}, {}
  for name, run in runners.items():
    begin = time.perf_counter()
    for i in range(args.warmup):
      loss = run(batches[i % len(batches)])
      first_loss.setdefault(name, loss)
    warmup_seconds[name] = time.perf_counter() - begin

  load_before = os.getloadavg()[0]
  seconds = dict.fromkeys(runners, 0.0)
  for step in range(args.warmup, total_steps):
    order = list(runners.items())
    for name, run in order if step % 2 == 0 else order[::-1]:
      begin = time.perf_counter()
      run(batches[step % len(batches)])
      seconds[name] += time.perf_counter() - begin
  load_after = os.getloadavg()[0]

  examples = args.steps * args.batch_size
  rate = {name: examples / s for name, s in seconds.items()}
  step_flops = 3 * flops_lib.forward_flops(config, args.max_seq_len, args.batch_size,
                                           task="classify", num_labels=args.num_agents)
  device = jax.devices()[0]
  print(f"model: BERT {config.num_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_heads} heads, intermediate {config.intermediate_size}, "
        f"max_seq_len {args.max_seq_len}, {args.num_agents}-way head, dropout {_DROPOUT}")
  print(f"batches: {args.batch_size} full-length random windows; {args.warmup} warm-up + "
        f"{args.steps} timed steps each, alternating")
  print(f"machine: {os.cpu_count()} CPU cores shared with other work, load average "
        f"{load_before:.1f} before and {load_after:.1f} after timing; JAX {jax.__version__} on "
        f"{device.platform} ({device.device_kind}, mesh of {mesh.size}); torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads); "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  print(f"analytic FLOPs per train step (3x forward): {step_flops / 1e9:.1f} GFLOP")
  if peer is not None:
    print(f"surrogate check, torch vs surrogate.mean_comp_sum_loss (u=1, random logits and "
          f"costs): max relative |diff| = {surrogate_max_diff(args.num_agents, args.seed):.1e}")
  labels = {"jax": f"JAX Trainable.make_step ({dtype})",
            "torch": f"PyTorch eager BertForSequenceClassification (float32, "
                     f"{args.torch_attention} attention)"}
  for name in runners:
    print(f"{labels[name]}: {rate[name]:.2f} examples/s ({seconds[name] / args.steps:.2f} s/step, "
          f"{rate[name] / args.batch_size * step_flops / 1e9:.1f} GFLOP/s); warm-up "
          f"{warmup_seconds[name]:.1f} s, first loss {first_loss[name]:.4f}")
  if peer is not None:
    ratio = rate["jax"] / rate["torch"]
    verdict = "met" if ratio >= _RATIO_TARGET else "MISSED"
    print(f"ratio JAX / PyTorch: {ratio:.2f}x (target >= {_RATIO_TARGET:.1f}x on the CPU: "
          f"{verdict if device.platform == 'cpu' else 'n/a, JAX is not on the CPU'})")
  if device.platform == "gpu":
    peak = peak_flops(device)
    achieved = rate["jax"] / args.batch_size * step_flops
    fraction = "unknown" if peak is None else f"{achieved / peak:.1%} of {peak / 1e12:.0f} TFLOP/s"
    print(f"GPU {device.device_kind}: {rate['jax']:.1f} examples/s, peak bf16 dense FLOP/s "
          f"fraction: {fraction}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
