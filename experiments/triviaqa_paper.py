"""The full-scale TriviaQA (rc) setting for a networked TPU or GPU machine.

TFDS `trivia_qa/rc`: (question, evidence document) pairs with answer aliases
located in the whole evidence document, read in token windows over all of it;
experts are SQuAD checkpoints fine-tuned one epoch on expert_train. A cut at
4,000 characters left 9 of the 19 pairs of the official rc sample without their
answer (a miss for every agent); TriviaQA's documents average about 2,900 words,
so whole documents make several times the windows. `--set
data.max_evidence_chars=N` bounds them and logs how many answers the cut loses.
"""

import dataclasses

from l2d_jax import config as C

import squad_v1_paper as v1


def get_config() -> C.ExperimentConfig:
  config = v1.get_config()
  return dataclasses.replace(
      config, name="triviaqa_paper", workdir="runs/triviaqa_paper",
      data=C.DataConfig(source="tfds", tfds_name="trivia_qa/rc", max_evidence_chars=0),
      agents=tuple(dataclasses.replace(a, finetune=dataclasses.replace(a.finetune, epochs=1.0))
                   for a in config.agents))
