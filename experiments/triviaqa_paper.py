"""The full-scale TriviaQA (rc) setting for a networked TPU or GPU machine.

TFDS `trivia_qa/rc`: (question, evidence document) pairs with answer aliases
located in the evidence (truncated to 4,000 characters); experts are SQuAD
checkpoints fine-tuned one epoch on expert_train.
"""

import dataclasses

from l2d_jax import config as C

import squad_v1_paper as v1


def get_config() -> C.ExperimentConfig:
  config = v1.get_config()
  return dataclasses.replace(
      config, name="triviaqa_paper", workdir="runs/triviaqa_paper",
      data=C.DataConfig(source="tfds", tfds_name="trivia_qa/rc", max_evidence_chars=4000),
      agents=tuple(dataclasses.replace(a, finetune=dataclasses.replace(a.finetune, epochs=1.0))
                   for a in config.agents))
