"""squad_v1_minilm at the setting meant for a GPU: each expert fine-tuned 3 epochs at 384 tokens.

Experts and rejector train in bf16 on fused attention (`squad_v1_minilm.on_gpu`);
everything else is squad_v1_minilm's (splits, human agent, rejector, costs,
beta curve), so the two reports compare directly: only the experts are
stronger. One command on a GPU machine, from the repository root:

  l2d-jax run --config squad_v1_minilm_gpu
"""

import dataclasses

from l2d_jax import config as C

import squad_v1_minilm as v1


def get_config() -> C.ExperimentConfig:
  return dataclasses.replace(v1.on_gpu(v1.get_config()), name="squad_v1_minilm_gpu",
                             workdir="runs/squad_v1_minilm_gpu")
