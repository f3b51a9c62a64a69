"""The full-scale SQuAD v1.1 setting, for a networked TPU or GPU machine.

TFDS `squad/v1.1` (the train split is divided article-disjointly between experts
and rejector; validation is the test set), Hugging Face checkpoints of
increasing size as experts, a TinyBERT-sized rejector trained from scratch on
the first expert's tokenizer. Run on every host with:
  l2d-jax run --config squad_v1_paper [--distributed]
"""

from l2d_jax import config as C
from l2d_jax.train.optim import OptimConfig

EXPERTS = (  # (name, Hugging Face checkpoint)
    ("bert-base", "csarron/bert-base-uncased-squad-v1"),
    ("bert-large", "bert-large-uncased-whole-word-masking-finetuned-squad"),
    ("roberta-base", "deepset/roberta-base-squad2"),
)


def expert(name: str, checkpoint: str, epochs: float = 0.0) -> C.AgentConfig:
  """A checkpoint already fine-tuned for SQuAD (epochs=0) or to fine-tune on expert_train."""
  return C.AgentConfig(
      name=name, kind="model", model=checkpoint, fee="flops",
      finetune=C.FinetuneConfig(epochs=epochs, batch_size=32, max_seq_len=384, doc_stride=128,
                                compute_dtype="bfloat16",
                                optim=OptimConfig(learning_rate=3e-5, warmup_fraction=0.1)))


def get_config() -> C.ExperimentConfig:
  return C.ExperimentConfig(
      name="squad_v1_paper",
      workdir="runs/squad_v1_paper",
      data=C.DataConfig(source="tfds", tfds_name="squad/v1.1"),
      agents=(C.AgentConfig(name="distilbert", kind="model",
                            model="distilbert-base-uncased-distilled-squad", fee="flops",
                            finetune=C.FinetuneConfig(epochs=0.0, compute_dtype="bfloat16")),
              *(expert(n, c) for n, c in EXPERTS)),
      rejector=C.RejectorConfig(backbone="scratch", num_layers=4, hidden_size=312, num_heads=12,
                                intermediate_size=1200, max_seq_len=384),
      costs=C.CostConfig(loss="1-f1", beta_scale=0.1),
      train=C.TrainConfig(steps=20000, batch_size=256, compute_dtype="bfloat16",
                          optim=OptimConfig(learning_rate=1e-4, warmup_fraction=0.05),
                          eval_every=1000, checkpoint_every=1000),
      eval=C.EvalConfig(beta_scales=(0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)),
  )
