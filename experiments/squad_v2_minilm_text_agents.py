"""squad_v2_minilm_agents with the question text read too: the rejector reads
the text (as squad_v2_minilm's does) and the statistics squad_v2_minilm_agents
reads, and pays for both on every question.

It trains over squad_v2_minilm's agent pool (run that first, from the same
directory); only the rejector, its report and its export are new:

  l2d-jax run --config squad_v2_minilm_text_agents
"""

from l2d_jax import config as C

import squad_v1_minilm as v1
import squad_v2_minilm as v2


def get_config() -> C.ExperimentConfig:
  return v1.reading(v2.get_config(), ("text", "agents"), v2.STATISTICS_OF)
