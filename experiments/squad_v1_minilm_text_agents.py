"""squad_v1_minilm_agents with the question text read too: the rejector reads
the text (as squad_v1_minilm's does) and minilm-4L's statistics, and pays
for both on every question (its text encoder's FLOPs and minilm-4L's fee).

It trains over squad_v1_minilm's agent pool (run that first, from the same
directory); only the rejector, its report and its export are new:

  l2d-jax run --config squad_v1_minilm_text_agents
"""

from l2d_jax import config as C

import squad_v1_minilm as v1


def get_config() -> C.ExperimentConfig:
  return v1.reading(v1.get_config(), ("text", "agents"), v1.STATISTICS_OF)
