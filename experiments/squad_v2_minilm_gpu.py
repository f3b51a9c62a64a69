"""squad_v2_minilm at the setting meant for a GPU: experts continue squad_v1_minilm_gpu's.

Each expert starts from its size's expert of squad_v1_minilm_gpu (run that
first, from the same directory) and is fine-tuned 3 epochs at 384 tokens on
v2's expert_train, in bf16 on fused attention as the rejector is
(`squad_v1_minilm.on_gpu`); everything else is squad_v2_minilm's.

  l2d-jax run --config squad_v2_minilm_gpu
"""

import dataclasses

from l2d_jax import config as C

import squad_v1_minilm as v1
import squad_v2_minilm as v2

V1_EXPERTS = "runs/squad_v1_minilm_gpu/experts"


def get_config() -> C.ExperimentConfig:
  config = v1.on_gpu(v2.get_config())
  agents = tuple(dataclasses.replace(a, init_from=f"{V1_EXPERTS}/{a.name}/checkpoints")
                 if a.kind == "model" else a for a in config.agents)
  return dataclasses.replace(config, name="squad_v2_minilm_gpu",
                             workdir="runs/squad_v2_minilm_gpu", agents=agents)
