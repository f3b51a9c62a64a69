"""SQuAD v2.0 (16 dev articles with answers), fully offline: MiniLM truncated to 1, 2, 3, 6 layers.

Same protocol as squad_v1_minilm on ../shared/data/squad/dev-v2.0-half.json and
its splits; each expert's no-answer threshold is tuned on expert_train. No
human agent, so costs keep beta scale 0.1 (the experts' fees span 0.17 to 1).
"""

import dataclasses

from l2d_jax import config as C

import squad_v1_minilm as v1


def get_config() -> C.ExperimentConfig:
  config = v1.get_config()
  return dataclasses.replace(
      config, name="squad_v2_minilm", workdir="runs/squad_v2_minilm",
      data=dataclasses.replace(config.data, path=str(v1.SHARED / "dev-v2.0-half.json")),
      agents=tuple(a for a in config.agents if a.kind == "model"),
      costs=dataclasses.replace(config.costs, beta_scale=0.1))
