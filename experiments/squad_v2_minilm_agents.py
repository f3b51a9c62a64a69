"""squad_v2_minilm with a rejector that reads the agents' own features.

The agents' features are one expert's statistics (`store.STATISTICS`: its
span's and its answer's; the expert is `squad_v2_minilm.STATISTICS_OF`), so
that expert is paid on every question. The experiment trains over
squad_v2_minilm's agent pool (run that first, from the same directory); only
the rejector, its report and its export are new:

  l2d-jax run --config squad_v2_minilm_agents
"""

from l2d_jax import config as C

import squad_v1_minilm as v1
import squad_v2_minilm as v2


def get_config() -> C.ExperimentConfig:
  return v1.reading(v2.get_config(), ("agents",), v2.STATISTICS_OF)
