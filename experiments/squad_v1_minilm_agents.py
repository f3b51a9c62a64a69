"""squad_v1_minilm with a rejector that reads the agents' own features.

The agents' features are minilm-4L's statistics (best-span probability,
margins, entropies, windows, its answer's length in words), so minilm-4L is
paid on every question. Its
statistics were chosen over minilm-3L's and minilm-6L's on validation deferral
loss with the reader's fee included (`STATISTICS_OF`). The experiment trains
over squad_v1_minilm's agent pool (run that first, from the same directory);
only the rejector, its report and its export are new:

  l2d-jax run --config squad_v1_minilm_agents
"""

from l2d_jax import config as C

import squad_v1_minilm as v1


def get_config() -> C.ExperimentConfig:
  return v1.reading(v1.get_config(), ("agents",), v1.STATISTICS_OF)
