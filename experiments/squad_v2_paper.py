"""The full-scale SQuAD v2.0 setting (TFDS squad/v2.0) for a networked TPU or GPU machine."""

import dataclasses

from l2d_jax import config as C

import squad_v1_paper as v1

EXPERTS = (
    ("roberta-base", "deepset/roberta-base-squad2"),
    ("bert-large", "deepset/bert-large-uncased-whole-word-masking-squad2"),
    ("electra-large", "ahotrod/electra_large_discriminator_squad2_512"),
)


def get_config() -> C.ExperimentConfig:
  config = v1.get_config()
  return dataclasses.replace(
      config, name="squad_v2_paper", workdir="runs/squad_v2_paper",
      data=C.DataConfig(source="tfds", tfds_name="squad/v2.0"),
      agents=(v1.expert("distilroberta", "deepset/tinyroberta-squad2"),
              *(v1.expert(n, c) for n, c in EXPERTS)))
