"""SQuAD v1.1, fully offline: all-MiniLM-L6-v2 truncated to 1, 2, 3 and 6 layers, plus humans.

Experts are fine-tuned on the expert_train articles of ../shared/data/squad/splits.json,
the rejector is trained on rejector_train and everything is reported on test.
The human agent answers with annotation 1, scored leave-one-out against the others.
Sized for a 2-core CPU (see experiments/README.md for the commands and run times);
on a GPU raise `finetune.max_seq_len` to 384 and the epochs to 2.
"""

import pathlib

from l2d_jax import config as C
from l2d_jax.train.optim import OptimConfig

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad"
FILE = "dev-v1.1.json"


def minilm_expert(num_layers: int, *, max_seq_len: int = 256, epochs: float = 1.0,
                  batch_size: int = 32) -> C.AgentConfig:
  return C.AgentConfig(
      name=f"minilm-{num_layers}L", kind="model", model="all-MiniLM-L6-v2", num_layers=num_layers,
      fee="flops",
      finetune=C.FinetuneConfig(epochs=epochs, batch_size=batch_size, max_seq_len=max_seq_len,
                                doc_stride=max_seq_len // 3, max_query_len=64,
                                optim=OptimConfig(learning_rate=1e-4, warmup_fraction=0.1)))


def get_config() -> C.ExperimentConfig:
  return C.ExperimentConfig(
      name="squad_v1_minilm",
      workdir="runs/squad_v1_minilm",
      data=C.DataConfig(source="squad_json", path=str(SHARED / FILE),
                        splits=str(SHARED / "splits.json")),
      agents=(minilm_expert(1), minilm_expert(2), minilm_expert(3), minilm_expert(6),
              C.AgentConfig(name="human", kind="human", annotator=1, fee="3.0")),
      rejector=C.RejectorConfig(backbone="all-MiniLM-L6-v2", num_layers=2, max_seq_len=128),
      # At beta scale 0.2 the 6-layer expert and the human cost the same on
      # average (0.69), so which one a question should go to is a per-question
      # call: the rejector's encoder learns most there. At 0.1 almost every
      # question is cheapest with the human and it learned to send all to him.
      costs=C.CostConfig(loss="1-f1", beta_scale=0.2),
      train=C.TrainConfig(steps=300, batch_size=32,
                          optim=OptimConfig(learning_rate=5e-5, warmup_fraction=0.1),
                          eval_every=100, checkpoint_every=100),
      # Dense between 0.2 and 0.5, where the rejector moves from the human to
      # minilm-6L and then to the small experts: a sparse grid leaves gaps
      # there that the curve can only bridge by mixing.
      eval=C.EvalConfig(beta_scales=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45,
                                     0.5, 0.7, 1.0)),
  )
