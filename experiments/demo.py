"""The README's demo: synthetic QA, three small experts of different depth, humans, a rejector.

Everything is generated locally (data, WordPiece tokenizer, human annotations),
so it downloads nothing; sized to finish in under 10 minutes on a 2-core CPU.
Trained for so short a time, the experts master level-0 questions (one value
in the paragraph) and are near chance above; the human agent (annotator 1,
scored leave-one-out, slipping 10% of the time) is right almost everywhere but
costs twice the largest expert. The rejector has to learn, from the question
and the paragraph alone, which questions the cheapest expert gets right; its
own forward pass is paid on every question, as a cascade pays small-1L.
"""

import dataclasses

from l2d_jax import config as C
from l2d_jax.train.optim import OptimConfig


def _expert(name: str, num_layers: int, fee: str = "flops") -> C.AgentConfig:
  return C.AgentConfig(
      name=name, kind="model", model="scratch", num_layers=num_layers, fee=fee,
      scratch_hidden=64, scratch_heads=2, scratch_intermediate=256,
      finetune=C.FinetuneConfig(epochs=6.0, batch_size=32, max_seq_len=80, doc_stride=32,
                                max_query_len=24,
                                optim=OptimConfig(learning_rate=2e-3, warmup_fraction=0.1)))


def get_config() -> C.ExperimentConfig:
  return C.ExperimentConfig(
      name="demo",
      workdir="runs/demo",
      data=C.DataConfig(source="synthetic", synthetic_seed=0, synthetic_articles=128,
                        synthetic_annotators=3),
      agents=(_expert("small-1L", 1), _expert("medium-2L", 2), _expert("large-4L", 4),
              C.AgentConfig(name="human", kind="human", annotator=1, fee="2.0")),
      # The rejector pays its own forward pass on every question (eval.rejector_fee),
      # so it is kept small: at hidden 16 it costs a tenth of small-1L.
      rejector=C.RejectorConfig(backbone="scratch", num_layers=1, hidden_size=16, num_heads=2,
                                intermediate_size=64, max_seq_len=80),
      costs=C.CostConfig(loss="1-f1", beta_scale=0.2),
      train=C.TrainConfig(steps=400, batch_size=32,
                          optim=OptimConfig(learning_rate=1e-3, warmup_fraction=0.05),
                          eval_every=100, checkpoint_every=100),
      eval=C.EvalConfig(beta_scales=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)),
  )


def smoke_config() -> C.ExperimentConfig:
  """A tiny version (two agents, a few steps) for the end-to-end test."""
  config = get_config()
  tiny = lambda a: dataclasses.replace(a, finetune=dataclasses.replace(a.finetune, epochs=0.2))
  return dataclasses.replace(
      config, name="demo-smoke", data=dataclasses.replace(config.data, synthetic_articles=8),
      agents=tuple(tiny(a) for a in config.agents[:2]),
      train=dataclasses.replace(config.train, steps=4, eval_every=2, checkpoint_every=2),
      eval=dataclasses.replace(config.eval, beta_scales=(0.0, 0.2, 1.0)))
