"""squad_v1_minilm at the setting meant for a GPU: each expert fine-tuned 3 epochs at 384 tokens.

Everything else is squad_v1_minilm's (splits, human agent, rejector, costs,
beta curve), so the two reports compare directly: only the experts are
stronger. One command on a GPU machine, from the repository root:

  l2d-jax run --config squad_v1_minilm_gpu
"""

import dataclasses

from l2d_jax import config as C

import squad_v1_minilm as v1


def get_config() -> C.ExperimentConfig:
  config = v1.get_config()
  agents = tuple(v1.minilm_expert(a.num_layers, **v1.GPU_RECIPE)
                 if a.kind == "model" else a for a in config.agents)
  return dataclasses.replace(config, name="squad_v1_minilm_gpu",
                             workdir="runs/squad_v1_minilm_gpu", agents=agents)
