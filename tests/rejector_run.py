"""A small rejector training run in its own process, for the kill/resume and multi-host tests.

    python tests/rejector_run.py WORKDIR [--kill-at STEP] [--process-id I --num-processes N
                                          --port P] [--devices D]

Trains a tiny rejector on seeded data for 24 steps (checkpoints every 8) and
writes the final parameters to WORKDIR/params.npz, then averages it with a
fresh rejector (`rejector.ensemble`) and writes to WORKDIR/ensemble.npz the
ensemble's logits, as a whole and from its head on its features, and the mean
of its members' logits. `--kill-at` SIGKILLs the
process when batch STEP is requested, once the step-8 checkpoint is final
(the step-16 one may then be mid-save). With
`--num-processes`, JAX's own `jax.distributed` runs it multi-process over loopback.
"""

import argparse
import os
import signal
import sys
import time


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("workdir")
  parser.add_argument("--kill-at", type=int, default=-1)
  parser.add_argument("--process-id", type=int, default=0)
  parser.add_argument("--num-processes", type=int, default=1)
  parser.add_argument("--port", type=int, default=0)
  parser.add_argument("--devices", type=int, default=8, help="CPU devices per process")
  args = parser.parse_args()
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
  os.environ["JAX_PLATFORMS"] = "cpu"
  import jax  # pylint: disable=import-outside-toplevel
  if args.num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args.port}",
                               num_processes=args.num_processes, process_id=args.process_id)
  import numpy as np  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from l2d_jax.rejector.ensemble import Ensemble  # pylint: disable=import-outside-toplevel
  from l2d_jax.train import sweep  # pylint: disable=import-outside-toplevel
  from l2d_jax.train import rejector as R  # pylint: disable=import-outside-toplevel
  from l2d_jax.train.optim import OptimConfig  # pylint: disable=import-outside-toplevel

  data = toy_data()
  spec = R.CostSpec("1-f1", (1.0, 1.0, 1.0), (0.0, 0.05, 0.1))
  model = tiny_rejector(seed=1)
  settings = R.RejectorSettings(steps=24, batch_size=16, optim=OptimConfig(learning_rate=3e-3),
                                eval_every=8, checkpoint_every=8, progress=False)
  rows = data.rows
  if args.kill_at >= 0:
    calls = iter(range(10**9))

    class Killing(R.RejectorData):
      def rows(self, index_B):
        if next(calls) == args.kill_at:
          # once the step-8 checkpoint is final (a later save may be in flight)
          while not os.path.isdir(os.path.join(args.workdir, "checkpoints", "8")):
            time.sleep(0.05)
          os.kill(os.getpid(), signal.SIGKILL)
        return rows(index_B)

    data = Killing(data.inputs, data.scores, data.example_ids)
  trainable, _ = R.train_rejector(model, data, spec, settings, workdir=args.workdir)
  members = [trainable.model(), tiny_rejector(seed=2)]
  ensemble = Ensemble(members)
  logits = {"ensemble": R.predict_logits(ensemble, data.inputs),
            "head": sweep.classifier_logits(ensemble, sweep.pooled_features(ensemble, data.inputs)),
            "members_mean": np.mean([R.predict_logits(m, data.inputs) for m in members], axis=0)}
  if jax.process_index() == 0:
    flat = {"/".join(map(str, k)): np.asarray(v) for k, v in
            jax.tree_util.tree_flatten_with_path(trainable.state["params"])[0]}
    np.savez(os.path.join(args.workdir, "params.npz"), **{k: v for k, v in flat.items()})
    np.savez(os.path.join(args.workdir, "ensemble.npz"), **logits)


def tiny_rejector(seed: int):
  """A one-layer scratch text rejector over `toy_data`'s 16 tokens and 3 agents."""
  from l2d_jax.rejector import text  # pylint: disable=import-outside-toplevel
  return text.text_rejector("scratch", 3, vocab_size=64, num_layers=1, hidden_size=16,
                            num_heads=2, intermediate_size=32, max_seq_len=16, seed=seed)


def toy_data():
  """48 questions of 16 tokens; agent 2 is right exactly when token 1 is even."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from l2d_jax.train import rejector as R  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  num, length = 48, 16
  ids = rng.integers(5, 64, (num, length)).astype(np.int32)
  inputs = {"input_ids": ids, "attention_mask": np.ones((num, length), np.int32),
            "token_type_ids": np.zeros((num, length), np.int32)}
  f1 = np.stack([np.full(num, 0.5), np.full(num, 0.6), (ids[:, 1] % 2 == 0)], 1).astype(np.float32)
  return R.RejectorData(inputs, {"em": f1, "f1": f1, "span_nll": 1 - f1},
                        [str(i) for i in range(num)])


if __name__ == "__main__":
  main()
