"""A vmapped hyperparameter sweep of rejector heads against the same configurations one by one.

The check of issue 4: 32 configurations (a grid over beta scale, alpha,
learning rate, u and seed) trained by `sweep.train_heads` in one vmapped
program must finish at least 10x sooner than the same 32 trained one after
another, each by its own `train_heads` call with one point (what a user
without vmap would write). Sizes are realistic for the frozen-encoder mode:
pooled features of 4,096 questions at MiniLM's width 384, 4 agents, 300 steps
of batch 256.

Each side runs twice. The first pass counts everything a user waits for,
compilation included (the sequential side compiles the one-configuration
program once and reuses it for the other 31 calls); the second pass finds both
programs compiled, and is also printed with any compile time taken out (read
from JAX's compile events: tracing, lowering and XLA compilation, overlaps
merged). The vmapped kernels are compared with the sequential
ones, so both really train the same heads.

  python benchmarks/sweep_vmap.py [--steps 300] [--num-examples 4096]
"""

import argparse
import os
import sys
import time

import jax
import numpy as np
from jax import monitoring

from l2d_jax.train import sweep

_RATIO_TARGET = 10.0
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")


class CompileClock:
  """Seconds JAX spent tracing, lowering and compiling, from its monitoring events.

  Nested traces (jitted helpers inside the traced function) overlap their
  parent's span, so spans are merged before they are summed.
  """

  def __init__(self):
    self._spans: list[tuple[float, float]] = []
    monitoring.register_event_time_span_listener(self._record)

  def _record(self, event: str, start: float, end: float, **_) -> None:
    if event in _COMPILE_EVENTS:
      self._spans.append((start, end))

  def mark(self) -> int:
    return len(self._spans)

  def seconds_since(self, mark: int) -> float:
    """Wall-clock seconds covered by compile events recorded after `mark`."""
    total, covered_to = 0.0, -np.inf
    for start, end in sorted(self._spans[mark:]):
      if end > covered_to:
        total += end - max(start, covered_to)
        covered_to = end
    return total


def random_inputs(num_examples: int, hidden: int, num_agents: int, seed: int
                  ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
  """Pooler-like features `[E, H]` in (-1, 1), per-agent scores `[E, J]` and fees `[J]`."""
  rng = np.random.default_rng(seed)
  pooled_ExH = np.tanh(rng.standard_normal((num_examples, hidden))).astype(np.float32)
  # Scores that depend on the features, so the heads have something to learn.
  skill_HxJ = rng.standard_normal((hidden, num_agents)).astype(np.float32) / np.sqrt(hidden)
  f1_ExJ = 1.0 / (1.0 + np.exp(-3.0 * pooled_ExH @ skill_HxJ))
  scores = {"f1": f1_ExJ.astype(np.float32),
            "em": (f1_ExJ > 0.7).astype(np.float32),
            "span_nll": -np.log(np.clip(f1_ExJ, 1e-3, 1.0)).astype(np.float32)}
  fees_J = np.linspace(0.0, 0.3, num_agents, dtype=np.float32)
  return pooled_ExH, scores, fees_J


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num-examples", type=int, default=4096, help="questions E")
  parser.add_argument("--hidden", type=int, default=384, help="pooled feature width H")
  parser.add_argument("--num-agents", type=int, default=4, help="agents J")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch-size", type=int, default=256)
  parser.add_argument("--loss", default="1-f1", choices=("1-f1", "1-em", "span_nll"))
  parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
  args = parser.parse_args(argv)

  points = sweep.grid(beta_scale=(0.5, 2.0), alpha=(1.0, 2.0), learning_rate=(1e-2, 3e-3),
                      u=(1.0, 0.0), seed=(0, 1))
  pooled_ExH, scores, fees_J = random_inputs(args.num_examples, args.hidden, args.num_agents,
                                             args.seed)
  settings = sweep.HeadTraining(steps=args.steps, batch_size=args.batch_size)
  clock = CompileClock()

  def vmapped():
    return sweep.train_heads(pooled_ExH, scores, fees_J, args.loss, points, settings)

  def sequential():
    heads = [sweep.train_heads(pooled_ExH, scores, fees_J, args.loss, [p], settings)
             for p in points]
    return (np.concatenate([k for k, _ in heads]), np.concatenate([b for _, b in heads]))

  load_before = os.getloadavg()[0]
  wall, compile_s, results = {}, {}, {}
  for run_pass in (1, 2):
    for name, run in (("vmapped", vmapped), ("sequential", sequential)):
      mark = clock.mark()
      begin = time.perf_counter()
      results[name] = run()  # NumPy arrays: the work has finished
      wall[name, run_pass] = time.perf_counter() - begin
      compile_s[name, run_pass] = clock.seconds_since(mark)
  load_after = os.getloadavg()[0]

  kernel_diff = float(np.abs(results["vmapped"][0] - results["sequential"][0]).max())
  bias_diff = float(np.abs(results["vmapped"][1] - results["sequential"][1]).max())
  kernel_scale = float(np.abs(results["sequential"][0]).max())
  execute = {name: wall[name, 2] - compile_s[name, 2] for name in ("vmapped", "sequential")}

  device = jax.devices()[0]
  print(f"sweep: {len(points)} configurations (beta scale x alpha x learning rate x u x seed, "
        f"2 values each); E={args.num_examples} pooled features of H={args.hidden}, "
        f"J={args.num_agents}, {args.steps} steps of batch {args.batch_size}, loss {args.loss}")
  print(f"machine: {os.cpu_count()} CPU cores shared with other work, load average "
        f"{load_before:.1f} before and {load_after:.1f} after timing; JAX {jax.__version__} on "
        f"{device.platform} ({device.device_kind}); XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  for run_pass in (1, 2):
    for name, calls in (("vmapped", 1), ("sequential", len(points))):
      print(f"pass {run_pass}, {name} ({calls} train_heads call{'s' * (calls > 1)}): "
            f"{wall[name, run_pass]:.2f} s, of which compiling {compile_s[name, run_pass]:.2f} s")
  first = wall["sequential", 1] / wall["vmapped", 1]
  steady = execute["sequential"] / execute["vmapped"]
  rerun = wall["sequential", 2] / wall["vmapped", 2]
  verdict = lambda ratio: "met" if ratio >= _RATIO_TARGET else "MISSED"
  print(f"ratio sequential / vmapped, first run including compile: {first:.1f}x "
        f"(target >= {_RATIO_TARGET:.0f}x: {verdict(first)})")
  print(f"ratio sequential / vmapped, steady state (pass 2, compile excluded: "
        f"{execute['sequential']:.2f} s / {execute['vmapped']:.2f} s): {steady:.1f}x "
        f"(target >= {_RATIO_TARGET:.0f}x: {verdict(steady)})")
  print(f"ratio sequential / vmapped, pass 2 as measured: {rerun:.1f}x")
  print(f"vmapped vs sequential results: max |kernel diff| = {kernel_diff:.2e} "
        f"(max |kernel| {kernel_scale:.2f}), max |bias diff| = {bias_diff:.2e}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
