"""squad_v1_minilm with a rejector that reads the text and the agents' features.

The agents' features are minilm-3L's (agent 0): its span statistics (best-span
probability, margins, entropies, windows), so minilm-3L is paid on every
question. The experiment trains over squad_v1_minilm's agent pool (run that
first, from the same directory); only the rejector, its report and its export
are new:

  l2d-jax run --config squad_v1_minilm_text_agents
"""

from l2d_jax import config as C

import squad_v1_minilm as v1


def get_config() -> C.ExperimentConfig:
  return v1.reading(v1.get_config(), ("text", "agents"))
