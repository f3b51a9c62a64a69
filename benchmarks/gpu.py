"""Ours against PyTorch on one GPU, in one run: rejector train step, MiniLM span forward, a run.

The check of issue 14 on a lent GPU (one command, within the device budget):

1. Rejector train step: a 4-layer, hidden-312, 12-head BERT rejector at 384
   tokens, batch 256 (full-length random windows, random costs), the library's
   jitted step (`Trainable.make_step(rejector_loss)`) against
   `transformers.BertForSequenceClassification` trained the same way in PyTorch
   on CUDA (comp-sum surrogate, AdamW, clipping, schedule: the peer of
   `rejector_train_step.py`) with bf16 autocast and SDPA attention, eagerly and,
   when it compiles within `--compile-limit-s`, under `torch.compile`. Rows with
   attention dropout 0 (fused attention: cuDNN in ours, SDPA's kernels in
   PyTorch's) and 0.1 (ours spells the probabilities out to drop them);
   hidden dropout 0.1 in all. Targets: at least 2x PyTorch eager and 25% of
   the chip's dense bf16 peak (forward + backward FLOPs taken as 3x the
   analytic forward FLOPs of `models.flops`).
2. MiniLM-L6 span forward: all-MiniLM-L6-v2 over real SQuAD dev windows at 384
   tokens, batch 256, bf16: `agents.precompute.forward_fn` (logits, best span
   and gold NLL per window) against `BertForQuestionAnswering` under autocast
   and `inference_mode`. Target: at least 1.5x PyTorch eager.
3. The wall time of `l2d-jax run --config squad_v1_minilm_gpu` (`--run-config`;
   with `--dry-run` the demo) in a fresh workdir under `--out`, in a
   subprocess with what is left of `--deadline-s`.

Each row's batches are on the device before timing; a row runs `--warmup`
untimed steps, then `--steps` timed ones, synchronizing only at the end.
Prints a table and writes `gpu_benchmark.json` (and the run's log) to `--out`.

  python benchmarks/gpu.py --out DIR [--deadline-s 560]
  python benchmarks/gpu.py --dry-run --out DIR  # tiny shapes, the demo as the run: measures nothing
"""

import argparse
import dataclasses
import gc
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # PyTorch shares the GPU

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import torch  # pylint: disable=wrong-import-position
import transformers  # pylint: disable=wrong-import-position

import precompute_throughput  # pylint: disable=wrong-import-position
import rejector_train_step  # pylint: disable=wrong-import-position
from l2d_jax.agents.precompute import forward_fn  # pylint: disable=wrong-import-position
from l2d_jax.data import features as features_lib  # pylint: disable=wrong-import-position
from l2d_jax.data import tokenizer as tokenizer_lib  # pylint: disable=wrong-import-position
from l2d_jax.models import flops as flops_lib  # pylint: disable=wrong-import-position
from l2d_jax.models import hub  # pylint: disable=wrong-import-position
from l2d_jax.models.config import EncoderConfig  # pylint: disable=wrong-import-position
from l2d_jax.models.hf_import import load_pretrained  # pylint: disable=wrong-import-position
from l2d_jax.rejector.text import text_rejector  # pylint: disable=wrong-import-position
from l2d_jax.train import mesh as mesh_lib  # pylint: disable=wrong-import-position
from l2d_jax.train.optim import OptimConfig, make_optimizer  # pylint: disable=wrong-import-position
from l2d_jax.train.rejector import CostSpec, rejector_loss  # pylint: disable=wrong-import-position
from l2d_jax.train.state import Trainable  # pylint: disable=wrong-import-position

TRAIN_TARGET_RATIO, TRAIN_TARGET_PEAK, SPAN_TARGET_RATIO = 2.0, 0.25, 1.5
RESULTS_FILE = "gpu_benchmark.json"


@dataclasses.dataclass
class Row:
  """One timed configuration."""
  section: str
  name: str
  framework: str
  attention_dropout: float = 0.0  # rows compare with PyTorch eager at the same rate
  examples_per_s: float | None = None
  flops_per_example: float = 0.0
  seconds_warmup: float | None = None
  note: str = ""

  def fraction_of_peak(self, peak: float | None) -> float | None:
    if peak is None or self.examples_per_s is None:
      return None
    return self.examples_per_s * self.flops_per_example / peak


class Deadline:
  def __init__(self, seconds: float):
    self.end = time.monotonic() + seconds

  def left(self) -> float:
    return self.end - time.monotonic()


class CompileTimeout(Exception):
  pass


def _failure_note(err: BaseException, limit_s: float) -> str:
  """What a PyTorch row's exception means (Inductor wraps the alarm's CompileTimeout)."""
  chain, cause = [], err
  while cause is not None:
    chain.append(cause)
    cause = cause.__cause__ or cause.__context__
  if any(isinstance(e, CompileTimeout) or "CompileTimeout" in type(e).__name__ + str(e)
         for e in chain):
    return f"torch.compile did not finish within {limit_s:g} s"
  return f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"


def time_steps(run, sync, batches: list, warmup: int, steps: int) -> tuple[float, float]:
  """(warm-up seconds, timed seconds per step) of `run(batch)`; `sync()` waits for the device."""
  begin = time.perf_counter()
  for i in range(warmup):
    run(batches[i % len(batches)])
  sync()
  warm = time.perf_counter() - begin
  begin = time.perf_counter()
  for i in range(steps):
    run(batches[i % len(batches)])
  sync()
  return warm, (time.perf_counter() - begin) / steps


def _torch_sync(device: torch.device):
  return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _with_time_limit(seconds: float, fn):
  """`fn()`, or CompileTimeout once `seconds` have passed (SIGALRM: main thread, Unix)."""
  def alarm(signum, frame):
    raise CompileTimeout()
  previous = signal.signal(signal.SIGALRM, alarm)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    return fn()
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def _time_ours_train(args, shape, dtype: str, attention_dropout: float, spec: CostSpec,
                     optim: OptimConfig, batches: list, mesh) -> tuple[float, float]:
  """(seconds per step, warm-up seconds) of the library's jitted rejector step."""
  model = text_rejector("scratch", shape.num_agents, vocab_size=shape.vocab_size,
                        num_layers=shape.num_layers, hidden_size=shape.hidden_size,
                        num_heads=shape.num_heads, intermediate_size=shape.intermediate_size,
                        max_seq_len=shape.max_seq_len, compute_dtype=dtype,
                        attention_dropout=attention_dropout)
  trainable = Trainable(model, make_optimizer(optim, args.warmup + args.steps), mesh, 0)
  step = trainable.make_step(rejector_loss(spec, u=1.0))
  device_batches = [mesh_lib.shard_batch(mesh, b) for b in batches]
  state, last = [trainable.state], []

  def run(batch):
    state[0], metrics = step(state[0], batch)
    last[:] = [metrics["loss"]]

  warm, per_step = time_steps(run, lambda: jax.block_until_ready(last), device_batches,
                              args.warmup, args.steps)
  return per_step, warm


def train_step_rows(args, device: torch.device, deadline: Deadline) -> list[Row]:
  """Ours (bf16 fused, bf16 with attention dropout, fp32) and PyTorch (eager, compiled)."""
  shape = argparse.Namespace(
      num_layers=4, hidden_size=312, num_heads=12, intermediate_size=1200,
      max_seq_len=args.max_seq_len, vocab_size=30522, num_agents=4, seed=0,
      torch_attention="sdpa")
  if args.dry_run:
    shape.num_layers, shape.max_seq_len = 1, 64
  total_steps = args.warmup + args.steps
  rng = np.random.default_rng(0)
  spec = CostSpec("1-f1", (1.0,) * shape.num_agents,
                  tuple(float(b) for b in rng.uniform(0.0, 0.5, shape.num_agents)))
  optim = OptimConfig(learning_rate=1e-4)
  batches = rejector_train_step.random_batches(3, args.batch_size, shape.max_seq_len,
                                               shape.vocab_size, shape.num_agents, 0)
  mesh = mesh_lib.make_mesh()
  flops = 3 * flops_lib.forward_flops(
      EncoderConfig(family="bert", vocab_size=shape.vocab_size, hidden_size=shape.hidden_size,
                    num_layers=shape.num_layers, num_heads=shape.num_heads,
                    intermediate_size=shape.intermediate_size),
      shape.max_seq_len, task="classify", num_labels=shape.num_agents)
  rows = []
  for dtype, attention_dropout in (("bfloat16", 0.0), ("bfloat16", 0.1), ("float32", 0.0)):
    if deadline.left() < args.reserve_s:
      break
    row = Row("train", f"ours {dtype}, attention dropout {attention_dropout:g}", "jax",
              attention_dropout, flops_per_example=flops)
    try:
      per_step, row.seconds_warmup = _time_ours_train(args, shape, dtype, attention_dropout,
                                                      spec, optim, batches, mesh)
      row.examples_per_s = args.batch_size / per_step
    except Exception as err:  # pylint: disable=broad-except
      row.note = _failure_note(err, args.compile_limit_s)
    rows.append(row)
    gc.collect()
  for compile_model, attention_dropout in ((False, 0.0), (False, 0.1), (True, 0.0)):
    if deadline.left() < args.reserve_s:
      break
    label = "compiled" if compile_model else "eager"
    row = Row("train", f"PyTorch {label} bf16 autocast SDPA, attention dropout "
              f"{attention_dropout:g}", "torch", attention_dropout,
              flops_per_example=flops)
    try:
      peer = rejector_train_step.TorchTrainer(
          shape, optim, spec, total_steps, device=str(device), autocast=True,
          attention_dropout=attention_dropout, compile_model=compile_model)
      device_batches = [peer.to_device(b) for b in batches]
      sync = _torch_sync(device)
      if compile_model:  # the first steps compile: give up past the limit
        _with_time_limit(args.compile_limit_s, lambda: (peer.step(device_batches[0]), sync()))
      warm, per_step = time_steps(peer.step, sync, device_batches, args.warmup, args.steps)
      row.examples_per_s, row.seconds_warmup = args.batch_size / per_step, warm
    except Exception as err:  # pylint: disable=broad-except
      row.note = _failure_note(err, args.compile_limit_s)
    rows.append(row)
    peer = device_batches = None
    gc.collect()
    if device.type == "cuda":
      torch.cuda.empty_cache()
  return rows


def span_forward_rows(args, device: torch.device, deadline: Deadline) -> list[Row]:
  """Ours (`forward_fn`, bf16) against BertForQuestionAnswering (autocast; eager, compiled)."""
  model_dir = hub.resolve_model_dir("all-MiniLM-L6-v2")
  max_seq_len = 128 if args.dry_run else args.max_seq_len
  num_batches = 2 if args.dry_run else 4
  params = features_lib.FeatureParams(max_seq_len, max_seq_len // 3)
  arrays = precompute_throughput.first_features(
      args.data, tokenizer_lib.load_tokenizer(model_dir), params, num_batches * args.batch_size)
  arrays.pop("example_index_F")
  batches = [{k: v[i * args.batch_size:(i + 1) * args.batch_size] for k, v in arrays.items()}
             for i in range(num_batches)]
  loaded = load_pretrained(model_dir, task="span", dtype="bfloat16")
  flops = flops_lib.forward_flops(loaded.config, max_seq_len, task="span")
  mesh = mesh_lib.make_mesh()
  forward = forward_fn(loaded.model, mesh, 30)
  device_batches = [mesh_lib.shard_batch(mesh, b) for b in batches]
  last = []
  warm, per_step = time_steps(lambda b: last.__setitem__(slice(None), [forward(b)]),
                              lambda: jax.block_until_ready(last), device_batches,
                              args.warmup, args.steps)
  rows = [Row("span", "ours forward_fn bf16 (logits, best span, NLL)", "jax",
              examples_per_s=args.batch_size / per_step, flops_per_example=flops,
              seconds_warmup=warm)]
  peer = precompute_throughput.torch_peer(model_dir, loaded.model).to(device)
  torch_batches = [{name: torch.from_numpy(b[f"{name}_FxL"].astype(np.int64)).to(device)
                    for name in ("input_ids", "attention_mask", "token_type_ids")}
                   for b in batches]
  sync = _torch_sync(device)
  for compile_model in (False, True):
    if deadline.left() < args.reserve_s:
      break
    row = Row("span", f"PyTorch {'compiled' if compile_model else 'eager'} bf16 autocast SDPA",
              "torch", flops_per_example=flops)
    call = torch.compile(peer) if compile_model else peer

    def run(batch, call=call):
      with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
        call(**batch)

    try:
      if compile_model:
        _with_time_limit(args.compile_limit_s, lambda: (run(torch_batches[0]), sync()))
      warm, per_step = time_steps(run, sync, torch_batches, args.warmup, args.steps)
      row.examples_per_s, row.seconds_warmup = args.batch_size / per_step, warm
    except Exception as err:  # pylint: disable=broad-except
      row.note = _failure_note(err, args.compile_limit_s)
    rows.append(row)
  del peer, torch_batches
  gc.collect()
  if device.type == "cuda":
    torch.cuda.empty_cache()
  return rows


def run_experiment(args, out: pathlib.Path, deadline: Deadline) -> dict:
  """Wall time of `l2d-jax run` on `--run-config` in a fresh workdir, within the deadline."""
  limit = deadline.left() - 5
  if limit < 30:
    return {"config": args.run_config, "note": f"not run: {deadline.left():.0f} s left"}
  workdir = out / f"run_{args.run_config}"
  command = [sys.executable, "-m", "l2d_jax", "run", "--config", args.run_config,
             "--workdir", str(workdir), *(f"--set={s}" for s in args.run_set)]
  log_path = out / f"run_{args.run_config}.log"
  begin = time.perf_counter()
  with open(log_path, "w", encoding="utf-8") as log:
    try:
      code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=limit,
                            check=False).returncode
    except subprocess.TimeoutExpired:
      code = None
  seconds = time.perf_counter() - begin
  result = {"config": args.run_config, "command": " ".join(command), "seconds": round(seconds, 1),
            "exit_code": code, "log": str(log_path)}
  if code is None:
    result["note"] = f"stopped at the deadline after {seconds:.0f} s (rerun resumes)"
  report = workdir / "report" / "report.json"
  if code == 0 and report.exists():
    result["report"] = str(report)
  return result


def print_table(rows: list[Row], peak: float | None) -> dict:
  """Prints each section against its PyTorch eager row; returns the verdicts."""
  verdicts = {}
  for section, title, target in (("train", "rejector train step", TRAIN_TARGET_RATIO),
                                 ("span", "MiniLM-L6 span forward", SPAN_TARGET_RATIO)):
    section_rows = [r for r in rows if r.section == section]
    if not section_rows:
      continue
    print(f"\n{title} (examples/s; ratio to PyTorch eager with the same attention dropout; "
          f"fraction of the bf16 dense peak)")
    for row in section_rows:
      eager = next((r for r in section_rows if r.framework == "torch" and "eager" in r.name
                    and r.attention_dropout == row.attention_dropout), None)
      ratio = (row.examples_per_s / eager.examples_per_s
               if row.examples_per_s and eager and eager.examples_per_s else None)
      fraction = row.fraction_of_peak(peak)
      print(f"  {row.name:<58} "
            + (f"{row.examples_per_s:10.1f}" if row.examples_per_s else f"{'-':>10}")
            + (f"  {ratio:5.2f}x" if ratio else "        ")
            + (f"  {fraction:6.1%}" if fraction is not None else "")
            + (f"  ({row.note})" if row.note else ""))
      if row.framework == "jax" and ratio is not None:
        verdicts[f"{section}: {row.name}"] = {"ratio": ratio, "fraction_of_peak": fraction}
    best = max((r for r in section_rows if r.framework == "jax" and r.examples_per_s),
               key=lambda r: r.examples_per_s, default=None)
    if best is not None:
      key = f"{section}: {best.name}"
      ratio = verdicts.get(key, {}).get("ratio")
      met = ratio is not None and ratio >= target and (
          section != "train" or (best.fraction_of_peak(peak) or 0) >= TRAIN_TARGET_PEAK)
      print(f"  target: >= {target:g}x PyTorch eager"
            + (f" and >= {TRAIN_TARGET_PEAK:.0%} of peak" if section == "train" else "")
            + f": {'met' if met else 'MISSED'} by the best JAX row ({best.name})")
      verdicts[f"{section} target met"] = met
  return verdicts


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="gpu_benchmark", help="results directory")
  parser.add_argument("--deadline-s", type=float, default=560,
                      help="stop starting new work after this many seconds")
  parser.add_argument("--reserve-s", type=float, default=200,
                      help="seconds kept for the experiment run: no benchmark row starts past it")
  parser.add_argument("--batch-size", type=int, default=256)
  parser.add_argument("--max-seq-len", type=int, default=384)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--compile-limit-s", type=float, default=60)
  default_data = precompute_throughput._DEFAULT_DATA  # pylint: disable=protected-access
  parser.add_argument("--data", default=str(default_data),
                      help="SQuAD JSON for the span forward's windows")
  parser.add_argument("--run-config", default=None,
                      help="experiment to time (default squad_v1_minilm_gpu; with --dry-run demo)")
  parser.add_argument("--run-set", action="append", default=[], metavar="KEY=VALUE",
                      help="--set overrides for the run (repeatable)")
  parser.add_argument("--skip-run", action="store_true", help="benchmarks only")
  parser.add_argument("--dry-run", action="store_true",
                      help="tiny shapes and steps, to check the script on a CPU")
  args = parser.parse_args(argv)
  transformers.logging.set_verbosity_error()  # load reports of the fresh span head
  if args.dry_run:
    args.batch_size, args.warmup, args.steps = 4, 1, 1
  if args.run_config is None:  # a dry run checks the timed run end to end, in minutes on a CPU
    args.run_config = "demo" if args.dry_run else "squad_v1_minilm_gpu"
  if not pathlib.Path(args.data).exists():
    print(f"data not found: {args.data}", file=sys.stderr)
    return 2
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  deadline = Deadline(args.deadline_s)
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  jax_device = jax.devices()[0]
  peak = rejector_train_step.peak_flops(jax_device)
  print(f"JAX {jax.__version__} on {jax_device.platform} ({jax_device.device_kind}); torch "
        f"{torch.__version__} on {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + (f"; bf16 dense peak {peak / 1e12:.0f} TFLOP/s" if peak else "; bf16 peak unknown"))
  rows = train_step_rows(args, device, deadline)
  if deadline.left() > args.reserve_s:
    rows += span_forward_rows(args, device, deadline)
  verdicts = print_table(rows, peak)
  run = {"note": "skipped (--skip-run)"} if args.skip_run else run_experiment(args, out, deadline)
  print(f"\nl2d-jax run --config {args.run_config}: "
        + (f"{run['seconds']:.0f} s, exit code {run['exit_code']}" if "seconds" in run else "")
        + (f" ({run['note']})" if "note" in run else ""))
  results = {"jax": jax.__version__, "torch": torch.__version__,
             "device": jax_device.device_kind, "peak_bf16_flops": peak,
             "batch_size": args.batch_size, "max_seq_len": args.max_seq_len,
             "rows": [dataclasses.asdict(r) | {"fraction_of_peak": r.fraction_of_peak(peak)}
                      for r in rows],
             "verdicts": verdicts, "run": run, "dry_run": args.dry_run}
  (out / RESULTS_FILE).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
  print(f"results: {out / RESULTS_FILE}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
