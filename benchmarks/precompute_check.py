"""The part-2 check on real data: precompute on SQuAD dev-v1.1 with a fine-tuned MiniLM expert.

1. Fine-tunes all-MiniLM-L6-v2 (optionally truncated) on the expert_train articles.
2. Precomputes it over every question of dev-v1.1 into an agent store, is killed
   (SIGKILL, in a child process) part-way, restarts, and finishes.
3. Compares the resumed store with one computed in one go (bitwise), and the
   store's per-question EM/F1 with `l2d-jax score` on the predictions it wrote.

    python benchmarks/precompute_check.py --workdir runs/precompute_check [--layers 6]
"""

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "squad"


def child(args) -> None:
  """Fine-tune (resumable) and precompute into args.store; SIGKILL after --kill-after chunks."""
  from l2d_jax.agents import precompute, store as store_lib
  from l2d_jax.data import feature_cache, squad
  from l2d_jax.data.features import FeatureParams
  from l2d_jax.data.tokenizer import load_tokenizer, tokenizer_fingerprint
  from l2d_jax.models import hf_import
  from l2d_jax.models.hub import resolve_model_dir
  from l2d_jax.train import finetune
  from l2d_jax.train.optim import OptimConfig

  workdir = pathlib.Path(args.workdir)
  model_dir = resolve_model_dir("all-MiniLM-L6-v2")
  tokenizer = load_tokenizer(model_dir)
  params = FeatureParams(args.max_seq_len, args.max_seq_len // 3, 64)
  train = squad.read_split(SHARED / "dev-v1.1.json", SHARED / "splits.json", "expert_train")
  train_features = feature_cache.cached_features(train.examples, tokenizer, params,
                                                 workdir / "cache")
  model = hf_import.load_pretrained(model_dir, task="span", num_layers=args.layers).model
  trainable = finetune.finetune(
      model, train_features,
      finetune.FinetuneSettings(epochs=args.epochs, batch_size=32,
                                optim=OptimConfig(learning_rate=1e-4), checkpoint_every=50),
      workdir=workdir / "expert")
  examples = squad.read_squad(SHARED / "dev-v1.1.json").examples
  features = feature_cache.cached_features(examples, tokenizer, params, workdir / "cache")
  if args.kill_after >= 0:
    original = precompute._write_chunk  # pylint: disable=protected-access
    written = iter(range(10**9))

    def write_then_maybe_die(*a, **k):
      original(*a, **k)
      if next(written) + 1 == args.kill_after:
        os.kill(os.getpid(), signal.SIGKILL)

    precompute._write_chunk = write_then_maybe_die  # pylint: disable=protected-access
  start = time.perf_counter()
  precompute.precompute_model_agent(
      args.store, "minilm", trainable.model(), features, examples,
      fingerprints=store_lib.Fingerprints(feature_cache.examples_fingerprint(examples),
                                          tokenizer_fingerprint(tokenizer), f"minilm-{args.layers}L"),
      settings=precompute.PrecomputeSettings(batch_size=64, chunk_examples=1000))
  print(f"precompute: {len(examples)} questions, {features.num_features} windows, "
        f"{time.perf_counter() - start:.0f} s")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="runs/precompute_check")
  parser.add_argument("--layers", type=int, default=6)
  parser.add_argument("--epochs", type=float, default=1.0)
  parser.add_argument("--max-seq-len", type=int, default=256)
  parser.add_argument("--kill-after", type=int, default=-1, help=argparse.SUPPRESS)
  parser.add_argument("--store", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.store:
    child(args)
    return
  import numpy as np  # pylint: disable=import-outside-toplevel
  workdir = pathlib.Path(args.workdir)
  base = [sys.executable, __file__, "--workdir", str(workdir), "--layers", str(args.layers),
          "--epochs", str(args.epochs), "--max-seq-len", str(args.max_seq_len)]
  once, resumed = workdir / "store_once", workdir / "store_resumed"
  subprocess.run(base + ["--store", str(once)], check=True)
  killed = subprocess.run(base + ["--store", str(resumed), "--kill-after", "4"])
  print(f"killed run exit code {killed.returncode} (SIGKILL = -9) after 4 of 11 chunks")
  subprocess.run(base + ["--store", str(resumed)], check=True)
  same = all(
      all(np.array_equal(a[k], b[k]) for k in a.files)
      for path in sorted((once / "minilm").glob("chunk-*.npz"))
      for a, b in [(np.load(path), np.load(resumed / "minilm" / path.name))])
  same &= ((once / "minilm" / "predictions.json").read_text() ==
           (resumed / "minilm" / "predictions.json").read_text())
  print(f"resumed store identical to the uninterrupted one: {same}")
  from l2d_jax.agents import store as store_lib  # pylint: disable=import-outside-toplevel
  store = store_lib.AgentStore(once, ["minilm"])
  scored = json.loads(subprocess.run(
      [sys.executable, "-m", "l2d_jax", "score", "--data", str(SHARED / "dev-v1.1.json"),
       "--predictions", str(once / "minilm" / "predictions.json")],
      check=True, capture_output=True, text=True).stdout)
  em, f1 = 100 * store.example_table("em_E").mean(), 100 * store.example_table("f1_E").mean()
  print(f"store mean EM {em:.4f} F1 {f1:.4f}; l2d-jax score: {scored}")
  print(f"agree to 1e-4: {abs(em - scored['exact_match']) < 1e-4 and abs(f1 - scored['f1']) < 1e-4}")


if __name__ == "__main__":
  main()
