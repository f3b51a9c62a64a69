"""One directory that holds everything a trained rejector needs to route, and its agents' costs.

`export_rejector` writes, into one directory:

  model.safetensors, config.json    the rejector as a Hugging Face BertForSequenceClassification,
                                    when it is one that reads the text only
                                    (`rejector.text.hf_view`; an ensemble is not)
  tokenizer.json, tokenizer_config.json   its tokenizer (`AutoTokenizer.from_pretrained(dir)`)
  router.stablehlo, router.json     the `jax.export` routing function and how to feed it
  load_router.py                    a JAX + NumPy loader for it (no l2d_jax needed)
  agents.json                       the agents: names, fees, FLOPs, the cost it was trained on,
                                    and the agents whose features the router reads
  agents/NAME/                      for each of those, its exported feature function
                                    (`export.agent_features`), unless left out
  calibration.json                  optional: the rejector's logits on held-out questions, the
                                    fees and each question's article (its title), on which
                                    `l2d-jax route --budget` meets a budget
  export_manifest.json              written last: the format version and the size and
                                    SHA-256 of every other file in the directory

`l2d-jax route` needs nothing else: no training workdir, no agent store. Every
reader verifies the manifest first (`loader.verify_export`), so a damaged file
is named, never used, and a half-written export (no manifest yet) is refused.
"""

import dataclasses
import json
import math
import os
import pathlib
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import transformers

from l2d_jax.data.tokenizer import load_tokenizer, tokenizer_fingerprint
from l2d_jax.defer import budget
from l2d_jax.defer.costs import LossType
from l2d_jax.export import agent_features, hf, loader, stablehlo
from l2d_jax.rejector import text
from l2d_jax.rejector.ensemble import AnyRejector

AGENTS_FILE = "agents.json"
CALIBRATION_FILE = "calibration.json"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class AgentsMeta:
  """What consulting each agent costs, in the terms the rejector was trained with.

  The cost of sending a question to agent j was `alpha_J[j] * loss_j +
  beta_scale * fees_J[j]`, with `loss` one of `defer.costs.LossType`.

  Attributes:
    fees_J: consultation fee per question, in units of the most expensive model
      agent (`agents.fees`), in agent order.
    alpha_J: weight of each agent's loss.
    loss: "1-f1", "1-em" or "span_nll".
    beta_scale: multiplies every fee (the knob the accuracy-cost curve sweeps).
    flops_J: FLOPs per question of each agent; None for agents that are not
      models (predictions files, humans), or for the whole field when unknown.
    router_fee: what running the rejector itself costs per question (fee
      units, `eval.rejector_fee`), paid on every question it routes.
    router_flops: the rejector's FLOPs per question, None when unknown.
    router_reads: the agents whose features the router reads: each runs, and
      is paid, on every question (a question routed to one pays it once).
  """
  fees_J: tuple[float, ...]
  alpha_J: tuple[float, ...]
  loss: str
  beta_scale: float = 1.0
  flops_J: tuple[float | None, ...] | None = None
  router_fee: float = 0.0
  router_flops: float | None = None
  router_reads: tuple[str, ...] = ()

  def __post_init__(self):
    LossType(self.loss)  # raises ValueError naming the bad loss type
    lengths = {len(self.fees_J), len(self.alpha_J)} | (
        {len(self.flops_J)} if self.flops_J is not None else set())
    if len(lengths) != 1:
      raise ValueError(f"fees_J, alpha_J and flops_J must have one entry per agent; "
                       f"got lengths {sorted(lengths)}")
    numbers = [*self.fees_J, *self.alpha_J, self.beta_scale, self.router_fee,
               *(f for f in (*(self.flops_J or ()), self.router_flops) if f is not None)]
    if not all(math.isfinite(x) and x >= 0 for x in numbers):
      raise ValueError(f"fees, alphas, beta_scale and FLOPs must be finite and non-negative: "
                       f"{self}")

  @property
  def beta_J(self) -> tuple[float, ...]:
    """The fee term of each agent's cost, in cost units."""
    return tuple(self.beta_scale * fee for fee in self.fees_J)

  def to_json(self, agent_names: Sequence[str]) -> dict[str, Any]:
    """The agents.json record: one entry per agent, then the cost's shared terms."""
    if len(agent_names) != len(self.fees_J):
      raise ValueError(f"{len(agent_names)} agent names for {len(self.fees_J)} agents' costs")
    if not set(self.router_reads) <= set(agent_names):
      raise ValueError(f"the router reads agents {list(self.router_reads)}, not all of "
                       f"{list(agent_names)}")
    flops_J = self.flops_J or (None,) * len(self.fees_J)
    return {
        "format_version": FORMAT_VERSION,
        "agents": [{"name": name, "fee": fee, "beta": beta, "alpha": alpha, "flops": flops}
                   for name, fee, beta, alpha, flops
                   in zip(agent_names, self.fees_J, self.beta_J, self.alpha_J, flops_J)],
        "loss": self.loss,
        "beta_scale": self.beta_scale,
        "cost": "alpha * loss + beta_scale * fee",
        "router": {"fee": self.router_fee, "beta": self.beta_scale * self.router_fee,
                   "flops": self.router_flops, "reads": list(self.router_reads)},
    }

  @classmethod
  def from_json(cls, record: dict[str, Any]) -> tuple[list[str], "AgentsMeta"]:
    """The agent names and costs of an agents.json record."""
    if record.get("format_version") != FORMAT_VERSION:
      raise ValueError(f"agents.json format version {record.get('format_version')!r}, "
                       f"expected {FORMAT_VERSION}")
    agents = record["agents"]
    flops_J = tuple(a["flops"] for a in agents)
    router = record.get("router", {})  # absent from exports made before the router was priced
    return [a["name"] for a in agents], cls(
        fees_J=tuple(a["fee"] for a in agents), alpha_J=tuple(a["alpha"] for a in agents),
        loss=record["loss"], beta_scale=record["beta_scale"],
        flops_J=None if all(f is None for f in flops_J) else flops_J,
        router_fee=router.get("fee", 0.0), router_flops=router.get("flops"),
        router_reads=tuple(router.get("reads", ())))


def read_agents(export_dir: str | pathlib.Path) -> tuple[list[str], AgentsMeta]:
  """The agent names and costs of an export directory, after verifying the whole directory."""
  loader.verify_export(export_dir, required=(AGENTS_FILE,))
  path = pathlib.Path(export_dir) / AGENTS_FILE
  try:
    return AgentsMeta.from_json(json.loads(path.read_text(encoding="utf-8")))
  except (KeyError, TypeError, ValueError) as err:
    raise loader.ExportError(f"{path}: malformed agents record: {err!r}") from None


def read_calibration(export_dir: str | pathlib.Path) -> budget.Calibration:
  """The budget calibration of an export directory, after verifying the whole directory."""
  path = pathlib.Path(export_dir) / CALIBRATION_FILE
  if not path.is_file():
    raise loader.ExportError(f"{export_dir} has no {CALIBRATION_FILE}: it was exported without "
                             "the held-out logits budgets are met on (export it again)")
  loader.verify_export(export_dir, required=(CALIBRATION_FILE,))
  try:
    return budget.Calibration.from_json(json.loads(path.read_text(encoding="utf-8")))
  except ValueError as err:  # BudgetError, JSONDecodeError
    raise loader.ExportError(f"{path}: {err}") from None


def write_manifest(export_dir: str | pathlib.Path) -> pathlib.Path:
  """Records the size and SHA-256 of every file under `export_dir` in its manifest.

  Called once every other file is written, so whatever an exporter puts in the
  directory is covered. The manifest appears by an atomic rename: a directory
  either has none (not a finished export) or a whole one.
  """
  export_dir = pathlib.Path(export_dir)
  path = export_dir / loader.MANIFEST_FILE
  staging = path.with_name(f".{path.name}.tmp")  # a crashed earlier write's is not listed
  files = {file.relative_to(export_dir).as_posix():
           {"bytes": file.stat().st_size, "sha256": loader.file_sha256(file)}
           for file in sorted(export_dir.rglob("*"))
           if file.is_file() and file.name not in (path.name, staging.name)}
  manifest = {"format": loader.MANIFEST_FORMAT, "format_version": loader.FORMAT_VERSION,
              "files": files}
  staging.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
  os.replace(staging, path)
  return path


def export_rejector(model: AnyRejector, tokenizer: transformers.PreTrainedTokenizerBase,
                    out_dir: str | pathlib.Path, *, agent_names: Sequence[str],
                    agents_meta: AgentsMeta, max_seq_len: int, max_query_len: int = 64,
                    platforms: Sequence[str] = stablehlo.PLATFORMS,
                    calibration: budget.Calibration | None = None,
                    span_agents: Mapping[str, agent_features.SpanAgent] | None = None
                    ) -> pathlib.Path:
  """Writes the whole export directory (see the module doc) for a trained rejector.

  `max_seq_len` and `max_query_len` must be those the rejector's inputs were
  built with (`train.rejector.rejector_inputs`). The tokenizer is saved, read
  back and checked to tokenize exactly as the one given (same fingerprint).
  `calibration`, the rejector's held-out logits and fees, lets `route --budget`
  meet budgets; without it the directory has no calibration.json.
  `span_agents` are the model agents whose features the router reads, each
  exported under `agents/NAME/` so that `route` can compute them from the
  export alone; without them it needs `--agent-features FILE`.
  """
  hf.check_agent_names(agent_names, model.num_labels)
  meta_record = agents_meta.to_json(agent_names)
  if calibration is not None and calibration.agent_names != tuple(agent_names):
    raise ValueError(f"the budget calibration's agents {calibration.agent_names} are not the "
                     f"rejector's {tuple(agent_names)}")
  if not set(span_agents or ()) <= set(agents_meta.router_reads):
    raise ValueError(f"agents {sorted(span_agents)} are exported but the router reads "
                     f"{list(agents_meta.router_reads)}")
  # Until the new manifest is written last, the directory reads as an unfinished export.
  (pathlib.Path(out_dir) / loader.MANIFEST_FILE).unlink(missing_ok=True)
  classifier = text.hf_view(model)  # a BERT classifier when it reads the text only
  if classifier is None:
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (hf.WEIGHTS_FILE, hf.CONFIG_FILE):  # not those of an earlier export
      (out_dir / name).unlink(missing_ok=True)
    tokenizer.save_pretrained(str(out_dir))
  else:
    out_dir = hf.export_hf(classifier, tokenizer, out_dir, agent_names=agent_names)
  fingerprint = tokenizer_fingerprint(tokenizer)
  if tokenizer_fingerprint(load_tokenizer(out_dir)) != fingerprint:
    raise ValueError(f"the tokenizer saved in {out_dir} does not read back as the one given "
                     "(its fingerprint changed); routing from the export would tokenize "
                     "differently")
  stablehlo.export_router(model, out_dir, agent_names=agent_names, max_seq_len=max_seq_len,
                          max_query_len=max_query_len, tokenizer_fingerprint=fingerprint,
                          platforms=platforms)
  shutil.rmtree(out_dir / agent_features.AGENTS_DIR, ignore_errors=True)  # an earlier export's
  for name, agent in (span_agents or {}).items():
    agent_features.export_agent(agent, agent_features.agent_dir(out_dir, name),
                                platforms=platforms)
  (out_dir / AGENTS_FILE).write_text(json.dumps(meta_record, indent=1) + "\n", encoding="utf-8")
  if calibration is None:
    (out_dir / CALIBRATION_FILE).unlink(missing_ok=True)  # not one from an earlier export
  else:
    (out_dir / CALIBRATION_FILE).write_text(json.dumps(calibration.to_json()) + "\n",
                                            encoding="utf-8")
  write_manifest(out_dir)
  return out_dir
