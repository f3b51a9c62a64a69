"""SQuAD v1.1, fully offline: all-MiniLM-L6-v2 truncated to 3, 4 and 6 layers, plus humans.

Experts are fine-tuned on the expert_train articles of ../shared/data/squad/splits.json,
the rejector is trained on rejector_train and everything is reported on test.
The human agent answers with annotation 1, scored leave-one-out against the others.
Sized for a 2-core CPU (see experiments/README.md for the commands and run times);
`squad_v1_minilm_gpu` is the same with the experts' GPU recipe (`GPU_RECIPE`).

The experts' recipe (`benchmarks/expert_recipes.py`, test F1 measured on an
H200): batch 16 and learning rate 2e-4 give a small expert enough updates, 2
epochs at 256 tokens (732 steps) reach F1 0.50 / 0.64 / 0.69 for 3 / 4 / 6
layers, and 3 epochs at 384 tokens 0.55 / 0.67 / 0.70. The former recipe, one
epoch in batches of 32 at 1e-4 (183 steps), stopped the 1 to 3 layer experts
at F1 0.11 to 0.15. Each size is worth its fee against the next smaller one
(FLOPs fees 0.5 / 0.67 / 1); 2 layers reach only 0.23 even with 3 epochs at
384 tokens and 1 layer about 0.1, below what a pool that pays a human three
times the 6-layer fee can use, so the pool starts at 3 layers.
"""

import dataclasses
import pathlib

from l2d_jax import config as C
from l2d_jax.train.optim import OptimConfig

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad"
FILE = "dev-v1.1.json"


EXPERT_LAYERS = (3, 4, 6)
AGENTS_HEAD_LEARNING_RATE = 1e-3
# What a GPU makes cheap: 3 epochs at 384 tokens (1,011 steps, about 20 s per expert on an
# H200, measured in fp32), here in bf16 without attention-probability dropout, so that
# training runs on cuDNN's fused attention (models.attention).
GPU_RECIPE = {"max_seq_len": 384, "epochs": 3.0, "compute_dtype": "bfloat16",
              "attention_dropout": 0.0}


def minilm_expert(num_layers: int, *, max_seq_len: int = 256, epochs: float = 2.0,
                  batch_size: int = 16, learning_rate: float = 2e-4,
                  compute_dtype: str = "float32",
                  attention_dropout: float | None = None) -> C.AgentConfig:
  return C.AgentConfig(
      name=f"minilm-{num_layers}L", kind="model", model="all-MiniLM-L6-v2", num_layers=num_layers,
      fee="flops",
      finetune=C.FinetuneConfig(epochs=epochs, batch_size=batch_size, max_seq_len=max_seq_len,
                                doc_stride=max_seq_len // 3, max_query_len=64,
                                optim=OptimConfig(learning_rate=learning_rate,
                                                  warmup_fraction=0.1),
                                compute_dtype=compute_dtype,
                                attention_dropout=attention_dropout))


def reading(config: C.ExperimentConfig, inputs: tuple[str, ...]) -> C.ExperimentConfig:
  """`config`'s experiment with a rejector that reads `inputs`, over `config`'s own agents.

  The variant reads the agent pool of `config`'s run (`pool_from`: run that first)
  and writes its rejector, report and export to a workdir named after it. A
  rejector reading the agents' features trains its fresh layers and head at
  `AGENTS_HEAD_LEARNING_RATE` (the text encoder, if any, stays at its own): at
  the encoder's 5e-5 they barely moved in 300 steps (validation deferral loss
  0.544 against 0.492, minilm-3L + human probe). It reads the agents' span
  statistics, not their hidden states, chosen on validation deferral loss
  (v1.1: 0.5095 against 0.5171 with both).
  """
  suffix = "_".join(inputs)
  train = config.train
  if "agents" in inputs:
    train = dataclasses.replace(train, head_learning_rate=AGENTS_HEAD_LEARNING_RATE)
  return dataclasses.replace(
      config, name=f"{config.name}_{suffix}", workdir=f"{config.workdir}_{suffix}",
      pool_from=config.workdir, train=train,
      rejector=dataclasses.replace(config.rejector, inputs=inputs, agent_parts=("statistics",)))


def on_gpu(config: C.ExperimentConfig) -> C.ExperimentConfig:
  """`config` with its model experts on `GPU_RECIPE` and its rejector trained the same way.

  The rejector's text encoder trains in bf16 without attention-probability
  dropout, on fused attention; everything else is the CPU experiment's.
  """
  agents = tuple(minilm_expert(a.num_layers, **GPU_RECIPE) if a.kind == "model" else a
                 for a in config.agents)
  return dataclasses.replace(
      config, agents=agents,
      rejector=dataclasses.replace(config.rejector, attention_dropout=0.0),
      train=dataclasses.replace(config.train, compute_dtype="bfloat16"))


def get_config() -> C.ExperimentConfig:
  return C.ExperimentConfig(
      name="squad_v1_minilm",
      workdir="runs/squad_v1_minilm",
      data=C.DataConfig(source="squad_json", path=str(SHARED / FILE),
                        splits=str(SHARED / "splits.json")),
      agents=(*(minilm_expert(layers) for layers in EXPERT_LAYERS),
              C.AgentConfig(name="human", kind="human", annotator=1, fee="3.0")),
      rejector=C.RejectorConfig(backbone="all-MiniLM-L6-v2", num_layers=2, max_seq_len=128),
      # With the former experts (6 layers at F1 0.51) the 6-layer expert and the
      # human cost the same on average at beta scale 0.2 (0.69), so which one a
      # question should go to was a per-question call: the rejector's encoder
      # learns most there. With this recipe's experts (4 and 6 layers at F1 0.64
      # and 0.69 on an H200) that balance lies near beta scale 0.11.
      costs=C.CostConfig(loss="1-f1", beta_scale=0.2),
      train=C.TrainConfig(steps=300, batch_size=32,
                          optim=OptimConfig(learning_rate=5e-5, warmup_fraction=0.1),
                          eval_every=100, checkpoint_every=100),
      # Dense between 0.2 and 0.5, where the rejector moves from the human to
      # minilm-6L and then to the small experts: a sparse grid leaves gaps
      # there that the curve can only bridge by mixing.
      eval=C.EvalConfig(beta_scales=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45,
                                     0.5, 0.7, 1.0),
                        # Fees as minilm-6L's alone, halfway to the human, and caps on the human.
                        budgets=("fee=1.0", "fee=2.0", "share:human<=0.3",
                                 "share:human<=0.1")),
  )
