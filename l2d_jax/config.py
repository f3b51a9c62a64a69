"""Experiment configuration: nested dataclasses, `get_config()` files, `--set` overrides.

An experiment is a Python file under `experiments/` whose `get_config()` returns
an `ExperimentConfig` (as in big_vision). Any field can be overridden from the
command line with `--set train.steps=200 --set costs.loss=1-em`; values are
parsed with `ast.literal_eval` and checked against the field's type. An unknown
experiment, key or section and a value of the wrong type raise `ConfigError`
naming it, which the CLI prints in one line. The whole
config is written as JSON into every artifact it makes (feature caches, agent
stores, checkpoints, reports), so a result always says how it was made.
"""

import ast
import dataclasses
import importlib.util
import json
import pathlib
import sys
import types
import typing

from l2d_jax.errors import ConfigError
from l2d_jax.train.optim import OptimConfig


@dataclasses.dataclass
class DataConfig:
  """Where questions come from and how they are split article-disjointly."""
  source: str = "synthetic"       # synthetic | squad_json | tfds | triviaqa
  path: str = ""                  # SQuAD JSON file, or the TriviaQA rc root
  splits: str = ""                # splits.json: expert_train / rejector_train / test titles
  tfds_name: str = ""             # squad/v1.1 | squad/v2.0 | trivia_qa/rc (source=tfds)
  tfds_data_dir: str = ""
  tfds_manual_dir: str = ""
  # TriviaQA: 0 reads every evidence document whole (token windows over all of it); N > 0
  # keeps each document's first N characters, and logs how many answers that cuts away.
  max_evidence_chars: int = 0
  synthetic_seed: int = 0
  synthetic_articles: int = 96
  synthetic_annotators: int = 1   # >1: extra human annotations (for a human agent)
  max_examples: int = 0           # 0 = all; >0 keeps the first N of each split (smoke runs)


@dataclasses.dataclass
class FinetuneConfig:
  """How a model agent is fine-tuned on expert_train (span cross-entropy)."""
  epochs: float = 2.0
  batch_size: int = 32
  max_seq_len: int = 384
  doc_stride: int = 128
  max_query_len: int = 64
  optim: OptimConfig = dataclasses.field(default_factory=lambda: OptimConfig(learning_rate=5e-5))
  seed: int = 0
  compute_dtype: str = "float32"  # float32 | bfloat16
  # Attention-probability dropout; None keeps the checkpoint's (BERT: 0.1). With 0 a GPU
  # trains on fused attention (cuDNN, bf16), which cannot drop probabilities.
  attention_dropout: float | None = None


@dataclasses.dataclass
class AgentConfig:
  """One agent of the pool; `kind` says where its answers come from."""
  name: str = "main"
  kind: str = "model"             # model | predictions | human
  model: str = ""                 # HF name or local dir; "scratch" builds `scratch_*` below
  num_layers: int = 0             # keep only the first k encoder layers (0: all)
  init_from: str = ""             # another run's experts/NAME/checkpoints: start from its weights
  tokenizer: str = ""             # default: the model's own directory
  finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
  scratch_hidden: int = 128
  scratch_heads: int = 2
  scratch_intermediate: int = 512
  fee: str = "flops"              # flops | latency | a number (cost units per query)
  predictions: str = ""           # kind=predictions: a SQuAD predictions JSON
  annotator: int = 1              # kind=human: which annotation answers (0-based)
  max_answer_len: int = 30
  null_threshold: str = "tune"    # SQuAD v2: "tune" on expert_train, or a number


@dataclasses.dataclass
class RejectorConfig:
  """The rejector encoder: TinyBERT-sized from scratch, or a pretrained backbone."""
  backbone: str = "scratch"       # "scratch" or an HF name / local dir (e.g. all-MiniLM-L6-v2)
  num_layers: int = 4
  hidden_size: int = 312
  num_heads: int = 12
  intermediate_size: int = 1200
  max_seq_len: int = 384
  tokenizer: str = ""             # default: the backbone's (scratch: the first agent's)
  frozen_encoder: bool = False    # True: pool features once, train only the head
  # The text encoder's attention-probability dropout; None: the backbone's (scratch: 0.1).
  # 0 lets a GPU train it on fused attention (cuDNN, bf16), which cannot drop probabilities.
  attention_dropout: float | None = None
  # The feature sources it reads (`l2d_jax.rejector.sources`): "text" (the question and
  # the start of its context, through the encoder above) and/or "agents" (the span
  # statistics and pooled hidden state of `feature_agents`, each then paid on every question).
  inputs: tuple[str, ...] = ("text",)
  feature_agents: tuple[str, ...] = ()  # model agents whose features it reads; (): agent 0
  agent_parts: tuple[str, ...] = ("statistics", "hidden")  # what "agents" reads of each
  agent_hidden: int = 64          # width of the "agents" source's GELU layer


@dataclasses.dataclass
class CostConfig:
  """c_j = alpha_j * loss_j + beta_scale * fee_j."""
  loss: str = "1-f1"              # 1-f1 | 1-em | span_nll
  alpha: tuple[float, ...] = ()   # per agent; () means 1 for every agent
  beta_scale: float = 1.0


@dataclasses.dataclass
class TrainConfig:
  """Rejector training."""
  steps: int = 1000
  batch_size: int = 32
  optim: OptimConfig = dataclasses.field(default_factory=lambda: OptimConfig(learning_rate=1e-4))
  # The learning rate of the head and of fresh layers (the agent-feature source's), when a
  # pretrained text encoder fine-tunes at optim's (`train.rejector.rejector_optimizer`), and
  # of the frozen-encoder head; 0: optim's for all. With no text encoder it is the only one.
  head_learning_rate: float = 0.0
  u: float = 1.0                  # comp-sum parameter (1: log / cross-entropy)
  seed: int = 0
  # Rejectors trained, from seeds seed, seed + 1, ...; more than one route by the mean of
  # their logits (`rejector.ensemble`), each paid for its forward pass.
  ensemble: int = 1
  eval_every: int = 200
  checkpoint_every: int = 200    # also each expert's fine-tuning, so a killed run resumes it
  keep_checkpoints: int = 3
  compute_dtype: str = "float32"
  num_devices: int = 0            # 0: every device


@dataclasses.dataclass
class EvalConfig:
  """The accuracy-cost curve and baselines."""
  beta_scales: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
  cascade_points: int = 21
  # Rejector curve points from the trained rejector's fee offsets (`defer.budget.fee_sweep`):
  # this many mean fees from its cheapest to its dearest allocation, beside the beta scales'
  # heads; 0: the heads only.
  fee_offsets: int = 21
  random_seeds: int = 5
  # What running the rejector costs per question, paid on every question as a
  # cascade pays its main model: "flops" (its forward pass against the pool's
  # most expensive model agent, as agents' "flops" fees) or a number ("0":
  # routing is free, the usual learning-to-defer convention).
  rejector_fee: str = "flops"
  # Operating points users can ask for, each met on the held-out rejector_train
  # questions, and on the test questions themselves (no label read), and reported on
  # test (`defer.budget`): "fee=1.2" (a target mean fee per question, deciding
  # included) or "share:human<=0.3" (a cap on one agent's share).
  budgets: tuple[str, ...] = ()
  # The rejector_train questions budgets are met on: "validation" (its validation
  # articles, which the rejector never trained on) or "rejector_train" (all of its
  # articles: more of them, so less shift between articles, but in-sample logits,
  # overconfident for a rejector that can fit its training questions).
  calibrate_on: str = "validation"


@dataclasses.dataclass
class ExperimentConfig:
  name: str = "experiment"
  workdir: str = "runs/experiment"
  # Another run's workdir whose agent pool (fine-tuned experts, agent store) this one reads
  # instead of building its own, e.g. to compare rejectors over the same agents; every agent
  # must be complete there, made with this config's settings. "": the pool is the workdir's.
  pool_from: str = ""
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  agents: tuple[AgentConfig, ...] = ()
  rejector: RejectorConfig = dataclasses.field(default_factory=RejectorConfig)
  costs: CostConfig = dataclasses.field(default_factory=CostConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)


def load_config(path_or_name: str) -> ExperimentConfig:
  """`get_config()` of an experiment file, or of `experiments/<name>.py` in this checkout."""
  path = pathlib.Path(path_or_name)
  if not path.exists():
    path = pathlib.Path(__file__).resolve().parents[1] / "experiments" / f"{path_or_name}.py"
  if not path.is_file():
    raise ConfigError(f"no experiment {path_or_name!r} (neither a file nor experiments/*.py)")
  spec = importlib.util.spec_from_file_location(f"l2d_experiment_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  sys.path.insert(0, str(path.parent))  # experiments may build on their siblings
  try:
    spec.loader.exec_module(module)
  except SyntaxError as err:
    raise ConfigError(f"{path}:{err.lineno}: {err.msg}") from err
  finally:
    sys.path.remove(str(path.parent))
  if not hasattr(module, "get_config"):
    raise ConfigError(f"{path} defines no get_config()")
  config = module.get_config()
  if not isinstance(config, ExperimentConfig):
    raise ConfigError(f"{path}: get_config() returned a {type(config).__name__}, "
                      f"not an ExperimentConfig")
  return config


def override(config, assignment: str):
  """A copy of `config` with one `a.b.c=value` assignment applied (`agents.1.num_layers=2`)."""
  if "=" not in assignment:
    raise ConfigError(f"--set expects key=value, got {assignment!r}")
  key, raw = assignment.split("=", 1)
  return _set(config, key.strip().split("."), raw.strip(), key)


def _set(node, path: list[str], raw: str, full_key: str):
  head, rest = path[0], path[1:]
  if isinstance(node, tuple):
    if not head.isdigit() or int(head) >= len(node):
      raise ConfigError(f"{full_key}: {head!r} is not an index below {len(node)}")
    items = list(node)
    items[int(head)] = _set(items[int(head)], rest, raw, full_key)
    return tuple(items)
  if not dataclasses.is_dataclass(node):
    raise ConfigError(f"{full_key}: cannot descend into a {type(node).__name__}")
  fields = {f.name: f for f in dataclasses.fields(node)}
  if head not in fields:
    raise ConfigError(f"{full_key}: {type(node).__name__} has no field {head!r} "
                   f"(fields: {', '.join(fields)})")
  value = getattr(node, head)
  if rest:
    return dataclasses.replace(node, **{head: _set(value, rest, raw, full_key)})
  hints = typing.get_type_hints(type(node))
  return dataclasses.replace(node, **{head: _parse(raw, hints[head], full_key)})


def _parse(raw: str, annotation, full_key: str):
  if annotation is str:
    return raw
  if (typing.get_origin(annotation) is tuple and typing.get_args(annotation)[0] is str
      and raw[:1] not in "([\"'"):  # text,agents: a tuple of bare words
    return tuple(word.strip() for word in raw.split(",") if word.strip())
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError) as e:
    raise ConfigError(f"{full_key}={raw!r}: not a Python literal") from e
  origin = typing.get_origin(annotation)
  if origin is tuple:
    value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    item_type = typing.get_args(annotation)[0]
    if not all(isinstance(v, item_type) or (item_type is float and isinstance(v, int))
               for v in value) or any(isinstance(v, bool) for v in value):
      raise ConfigError(f"{full_key}={raw!r}: expected a sequence of {item_type.__name__}")
    return tuple(item_type(v) for v in value)
  if annotation is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if origin in (typing.Union, types.UnionType):  # e.g. float | None: the first member it fits
    for member in typing.get_args(annotation):
      if member is type(None) and value is None:
        return None
      if member is not type(None):
        try:
          return _parse(raw, member, full_key)
        except ConfigError:
          pass
    names = " or ".join("None" if m is type(None) else m.__name__
                        for m in typing.get_args(annotation))
    raise ConfigError(f"{full_key}={raw!r}: expected {names}, got {type(value).__name__}")
  if isinstance(value, annotation) and not (isinstance(value, bool) and annotation is not bool):
    return value
  raise ConfigError(f"{full_key}={raw!r}: expected {annotation.__name__}, "
                    f"got {type(value).__name__}")


def to_dict(config) -> dict:
  """JSON-ready dict of a config (for manifests and reports)."""
  return json.loads(json.dumps(dataclasses.asdict(config)))
