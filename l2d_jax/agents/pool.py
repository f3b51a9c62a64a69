"""The agent pool of an experiment: build, fine-tune and precompute every agent once.

For each model agent: its tokenizer and windows (cached on disk), its encoder
(from scratch, or a Hugging Face checkpoint truncated to k layers), fine-tuning
on `expert_train` (resumable), for SQuAD v2 a no-answer threshold tuned on
`expert_train`, and one precompute pass over the evaluation questions
(`rejector_train` then `test`) into the agent store. Predictions-file and human
agents go into the same store. Every stage is skipped when its output is
already on disk, so rerunning an experiment continues where it stopped.
"""

import dataclasses
import functools
import hashlib
import json
import logging
import pathlib

import numpy as np
from flax import nnx

from l2d_jax import config as config_lib
from l2d_jax.agents import external, fees as fees_lib, precompute
from l2d_jax.agents import store as store_lib
from l2d_jax.data import feature_cache
from l2d_jax.data.example import Example
from l2d_jax.data.features import FeatureParams, Features
from l2d_jax.data.sources import Splits
from l2d_jax.data.tokenizer import load_tokenizer, tokenizer_fingerprint
from l2d_jax.models import flops as flops_lib, hf_import
from l2d_jax.models.config import EncoderConfig
from l2d_jax.models.heads import SpanModel
from l2d_jax.models.hub import resolve_model_dir
from l2d_jax.train import checkpoint
from l2d_jax.train import finetune as finetune_lib


@dataclasses.dataclass(frozen=True)
class Pool:
  """What the rest of the pipeline needs to know about the agents."""
  names: list[str]
  fees_J: np.ndarray               # consultation fee per question (1 = priciest model agent)
  flops_J: np.ndarray              # FLOPs per question (0 for agents that are not models)
  workdir: pathlib.Path            # where the pool lives: experts/, cache/, store/
  examples: list[Example]          # the evaluation questions, rejector_train then test
  num_rejector_train: int
  data_fingerprint: str

  @property
  def store_dir(self) -> pathlib.Path:
    return self.workdir / "store"

  def store(self) -> store_lib.AgentStore:
    """The pool's agent store, opened once (each chunk file is verified when first read)."""
    return self._opened_store

  @functools.cached_property
  def _opened_store(self) -> store_lib.AgentStore:
    return store_lib.AgentStore(self.store_dir, self.names, data_fingerprint=self.data_fingerprint)


def evaluation_questions(config: config_lib.ExperimentConfig, splits: Splits
                         ) -> tuple[list[Example], int]:
  """rejector_train + test, keeping only questions every agent can answer (logged)."""
  rejector_train, test = splits.rejector_train, splits.test
  for agent in config.agents:
    if agent.kind == "human":
      kept_train = external.questions_with_annotator(rejector_train, agent.annotator)
      kept_test = external.questions_with_annotator(test, agent.annotator)
      dropped = len(rejector_train) + len(test) - len(kept_train) - len(kept_test)
      if dropped:
        logging.warning("human agent %r: %d questions have no annotation %d to score "
                        "leave-one-out; they are left out of rejector_train/test",
                        agent.name, dropped, agent.annotator)
      rejector_train, test = kept_train, kept_test
  return rejector_train + test, len(rejector_train)


def build_expert(agent: config_lib.AgentConfig, vocab_size: int) -> tuple[SpanModel, EncoderConfig]:
  """The agent's span model before fine-tuning: from scratch or a (truncated) checkpoint."""
  dtype, attention_dropout = agent.finetune.compute_dtype, agent.finetune.attention_dropout
  if agent.model == "scratch":
    config = EncoderConfig(family="bert", vocab_size=vocab_size, hidden_size=agent.scratch_hidden,
                           num_layers=agent.num_layers, num_heads=agent.scratch_heads,
                           intermediate_size=agent.scratch_intermediate,
                           max_position_embeddings=max(512, agent.finetune.max_seq_len),
                           dtype=dtype, **({} if attention_dropout is None
                                           else {"attention_dropout": attention_dropout}))
    return SpanModel(config, rngs=nnx.Rngs(agent.finetune.seed)), config
  loaded = hf_import.load_pretrained(resolve_model_dir(agent.model), task="span",
                                     num_layers=agent.num_layers or None, dtype=dtype,
                                     attention_dropout=attention_dropout,
                                     seed=agent.finetune.seed)
  return loaded.model, loaded.config


def agent_tokenizer(agent: config_lib.AgentConfig, splits: Splits):
  """A model agent's tokenizer: configured, else its checkpoint's (scratch: the experiment's)."""
  return load_tokenizer(agent.tokenizer or (
      splits.tokenizer_dir if agent.model == "scratch" else resolve_model_dir(agent.model)))


def final_expert(agent: config_lib.AgentConfig, splits: Splits,
                 workdir: str | pathlib.Path) -> SpanModel:
  """A model agent's span model as it answered in the store (after `prepare_pool`).

  Its fine-tuned checkpoint in `workdir`, else (no fine-tuning) the `init_from`
  weights it started from, else the model as built.
  """
  model, _ = build_expert(agent, len(agent_tokenizer(agent, splits)))
  if agent.finetune.epochs > 0:
    checkpoint.restore_params_into(model, pathlib.Path(workdir) / "experts" / agent.name
                                   / "checkpoints")
  elif agent.init_from:
    checkpoint.restore_params_into(model, agent.init_from)
  return model


def prepare_pool(config: config_lib.ExperimentConfig, splits: Splits,
                 workdir: str | pathlib.Path, mesh=None, *, build: bool = True) -> Pool:
  """Runs every stage an agent still needs and returns the pool's description.

  With `build` False the pool in `workdir` is only read (another run's,
  `ExperimentConfig.pool_from`): an agent missing there, incomplete, or made
  with other settings is a ConfigError, never rebuilt in someone else's run.
  """
  workdir = pathlib.Path(workdir)
  examples, num_rejector_train = evaluation_questions(config, splits)
  data_fp = feature_cache.examples_fingerprint(examples)
  store_dir = workdir / "store"
  flops, specs = {}, {}
  for agent in config.agents:
    specs[agent.name] = agent.fee
    if not build:
      _check_built(store_dir, agent)
    if agent.kind == "model":
      flops[agent.name] = _model_agent(agent, splits, examples, data_fp, workdir, store_dir, mesh,
                                       checkpoint_every=config.train.checkpoint_every,
                                       build=build)
    elif agent.kind == "predictions":
      if not _complete(store_dir, agent.name):
        external.predictions_agent(store_dir, agent.name, agent.predictions, examples,
                                   version=splits.version,
                                   fingerprints=store_lib.Fingerprints(data_fp),
                                   extra_manifest={"config": dataclasses.asdict(agent)})
    elif agent.kind == "human":
      if not _complete(store_dir, agent.name):
        external.human_agent(store_dir, agent.name, examples, annotator=agent.annotator,
                             version=splits.version, fingerprints=store_lib.Fingerprints(data_fp),
                             extra_manifest={"config": dataclasses.asdict(agent)})
    else:
      raise config_lib.ConfigError(f"agent {agent.name!r}: unknown kind {agent.kind!r} "
                                   "(model, predictions, human)")
  fees = fees_lib.pool_fees(specs, flops)
  names = [a.name for a in config.agents]
  return Pool(names, np.array([fees[n] for n in names], np.float32),
              np.array([flops.get(n, 0.0) for n in names], np.float64), workdir, examples,
              num_rejector_train, data_fp)


def experiment_pool(config: config_lib.ExperimentConfig, splits: Splits, mesh=None) -> Pool:
  """The experiment's pool: built in its workdir, or read from `config.pool_from`'s."""
  return prepare_pool(config, splits, config.pool_from or config.workdir, mesh,
                      build=not config.pool_from)


def _check_built(store_dir: pathlib.Path, agent: config_lib.AgentConfig) -> None:
  """Refuses a read-only pool whose store lacks `agent` as this config makes it."""
  recorded = precompute.RECORDED if agent.kind == "model" else ""
  if not _complete(store_dir, agent.name, recorded):
    raise config_lib.ConfigError(
        f"{store_dir / agent.name}: agent {agent.name!r} is not complete in the pool_from "
        "run; run that experiment's precompute first")
  made_with = store_lib.read_manifest(store_dir / agent.name / "manifest.json").get("config")
  # What an agent answered does not depend on its fee: a variant may price it otherwise.
  unpriced = lambda record: {k: v for k, v in record.items() if k != "fee"}
  if made_with is not None and not same_settings(
      unpriced(made_with), unpriced(_as_json(agent)), _as_json(config_lib.AgentConfig())):
    raise config_lib.ConfigError(
        f"{store_dir / agent.name}: agent {agent.name!r} of the pool_from run was made with "
        "other settings than this config gives it")


def _complete(store_dir: pathlib.Path, agent: str, recorded: str = "") -> bool:
  """Whether `agent` is in the store as this version writes it: complete, recording what it
  records, with checksums (else: recompute, for every kind of agent alike)."""
  path = store_dir / agent / "manifest.json"
  if not path.exists():
    return False
  manifest = store_lib.read_manifest(path)
  return (manifest.get("complete", False) and "manifest_sha256" in manifest
          and manifest["fingerprints"].get("recorded", "") == recorded)


def _model_agent(agent: config_lib.AgentConfig, splits: Splits, examples: list[Example],
                 data_fp: str, workdir: pathlib.Path, store_dir: pathlib.Path, mesh, *,
                 checkpoint_every: int, build: bool = True) -> float:
  """Fine-tunes and precomputes one model agent (skipping what is done); its FLOPs/question.

  The fine-tuning checkpoints every `checkpoint_every` steps (the run's
  `train.checkpoint_every`), so a killed run resumes its expert mid-epoch. A
  complete agent's features file is brought up to date where the pool is
  built (`precompute.refresh_feature_file`).
  """
  tokenizer = agent_tokenizer(agent, splits)
  ft = agent.finetune
  params = FeatureParams(ft.max_seq_len, ft.doc_stride, ft.max_query_len)
  cache = workdir / "cache"
  eval_features = feature_cache.cached_features(examples, tokenizer, params, cache)
  model, encoder_config = build_expert(agent, len(tokenizer))
  flops = flops_lib.flops_per_question(
      encoder_config, eval_features.num_features / eval_features.num_examples, ft.max_seq_len)
  if _complete(store_dir, agent.name, precompute.RECORDED):
    if build:  # a pool_from run's directory is never written
      precompute.refresh_feature_file(store_dir, agent.name, examples)
    return flops
  train_features = feature_cache.cached_features(splits.expert_train, tokenizer, params, cache)
  expert_dir = workdir / "experts" / agent.name
  if agent.init_from and checkpoint.latest_finished_step(expert_dir / "checkpoints") is None:
    checkpoint.restore_params_into(model, agent.init_from)  # a resumed run restores its own
  if ft.epochs > 0:
    trainable = finetune_lib.finetune(
        model, train_features,
        finetune_lib.FinetuneSettings(epochs=ft.epochs, batch_size=ft.batch_size, optim=ft.optim,
                                      seed=ft.seed, checkpoint_every=checkpoint_every),
        workdir=expert_dir, mesh=mesh)
    model = trainable.model()
  settings = precompute.PrecomputeSettings(max_answer_len=agent.max_answer_len,
                                           version=splits.version)
  if splits.version == "2.0":
    threshold = _tuned_threshold(agent, model, train_features, splits.expert_train, expert_dir,
                                 settings, mesh)
    settings = dataclasses.replace(settings, null_threshold=threshold)
  fingerprints = store_lib.Fingerprints(
      data_fp, tokenizer_fingerprint(tokenizer),
      hashlib.sha256(json.dumps(dataclasses.asdict(agent), sort_keys=True).encode()).hexdigest())
  precompute.precompute_model_agent(
      store_dir, agent.name, model, eval_features, examples, fingerprints=fingerprints,
      settings=settings, mesh=mesh,
      extra_manifest={"flops_per_question": flops, "config": dataclasses.asdict(agent)})
  return flops


def _tuned_threshold(agent, model, features: Features, examples: list[Example],
                     expert_dir: pathlib.Path, settings: precompute.PrecomputeSettings,
                     mesh) -> float:
  """SQuAD v2: the no-answer threshold that maximizes F1 on expert_train (never on test)."""
  if agent.null_threshold != "tune":
    return float(agent.null_threshold)
  tune_dir = expert_dir / "threshold_store"
  precompute.precompute_model_agent(
      tune_dir, agent.name, model, features, examples,
      fingerprints=store_lib.Fingerprints(feature_cache.examples_fingerprint(examples)),
      settings=dataclasses.replace(settings, null_threshold=None), mesh=mesh)
  store = store_lib.AgentStore(tune_dir, [agent.name])
  return best_null_threshold(store.example_table("null_score_E")[:, 0],
                             store.example_table("score_E")[:, 0],
                             store.example_table("f1_E")[:, 0],
                             np.array([e.is_impossible for e in examples]))


def best_null_threshold(null_E: np.ndarray, score_E: np.ndarray, span_f1_E: np.ndarray,
                        impossible_E: np.ndarray) -> float:
  """The threshold t maximizing mean F1 when answering empty iff `null - score > t`.

  An empty answer scores 1 on unanswerable questions and 0 otherwise; the span
  answer scores `span_f1_E`. Candidates are the midpoints between sorted gaps.
  """
  gap_E = null_E - score_E
  order = np.argsort(gap_E)
  gaps = gap_E[order]
  empty_f1 = impossible_E[order].astype(np.float64)
  span_f1 = span_f1_E[order].astype(np.float64)
  # threshold just below gaps[i]: questions i.. answer empty, ..i-1 answer the span
  totals = np.concatenate([[0.0], np.cumsum(span_f1)]) + np.concatenate(
      [np.cumsum(empty_f1[::-1])[::-1], [0.0]])
  best = int(np.argmax(totals))
  if best == 0:
    return float(gaps[0] - 1.0)
  if best == len(gaps):
    return float(gaps[-1] + 1.0)
  return float((gaps[best - 1] + gaps[best]) / 2)


def _as_json(agent: config_lib.AgentConfig) -> dict:
  return json.loads(json.dumps(dataclasses.asdict(agent)))


def same_settings(made_with: dict, now: dict, defaults: dict) -> bool:
  """Whether a config recorded in a manifest is `now`'s, nested dicts compared key by key.

  A setting added since the manifest was written (absent from `made_with`)
  matches when `now` keeps its default, so a pool made before a field existed
  still serves a config that leaves it alone.
  """
  if set(made_with) - set(now):
    return False
  for key, value in now.items():
    default = defaults.get(key) if isinstance(defaults, dict) else None
    if key not in made_with:
      if value != default:
        return False
    elif isinstance(value, dict) and isinstance(made_with[key], dict):
      if not same_settings(made_with[key], value, default or {}):
        return False
    elif made_with[key] != value:
      return False
  return True
