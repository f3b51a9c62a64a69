"""A model agent's feature function exported beside the router: agent features from the export.

A router that reads model agents' own features (`rejector.agents`) needs them
for every question it routes. They come from a file (`agents.feature_file`,
written by precompute or `l2d-jax agent-features`), or from the agent itself,
exported here under `EXPORT/agents/NAME/`:

  span.stablehlo   `jax.export` of `precompute.window_features`: token windows
                   (ids, mask, types, character offsets) -> each window's best
                   span, span statistics and mean-pooled hidden state, with the
                   weights as constants and a symbolic batch
  span.json        how questions are windowed (`FeatureParams`), the longest
                   answer, the SQuAD v2 null threshold, the output names, the
                   tokenizer's fingerprint
  tokenizer files  the agent's tokenizer

`compute` windows questions with that tokenizer, runs the function and combines
each question's windows as precompute does (`precompute.question_features`),
with the answer statistics of its decoded answers, so the features equal the
stored ones up to float rounding. The export's manifest covers these files
(`bundle.write_manifest`).
"""

import dataclasses
import json
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import transformers
from flax import nnx

from l2d_jax.agents import answer_statistics, precompute
from l2d_jax.agents import store as store_lib
from l2d_jax.data.example import Example
from l2d_jax.data.features import FeatureParams, make_features
from l2d_jax.data.tokenizer import load_tokenizer, tokenizer_fingerprint
from l2d_jax.export import loader, stablehlo
from l2d_jax.models import attention
from l2d_jax.models.heads import SpanModel
from l2d_jax.train.inference import padded_batches

AGENTS_DIR = "agents"
FUNCTION_FILE = "span.stablehlo"
META_FILE = "span.json"
OUTPUTS = ("start_F", "end_F", "score_F", "null_score_F", "logprob_F", "null_logprob_F",
           "second_logprob_F", "start_entropy_F", "end_entropy_F", "hidden_FxH")


@dataclasses.dataclass(frozen=True)
class SpanAgent:
  """A model agent as precompute ran it: its final weights, tokenizer and decoding settings."""
  model: SpanModel
  tokenizer: transformers.PreTrainedTokenizerBase
  features: FeatureParams
  max_answer_len: int
  null_threshold: float | None


def agent_dir(export_dir: str | pathlib.Path, agent: str) -> pathlib.Path:
  return pathlib.Path(export_dir) / AGENTS_DIR / agent


def export_agent(agent: SpanAgent, out_dir: str | pathlib.Path, *,
                 platforms: Sequence[str]) -> pathlib.Path:
  """Writes `span.stablehlo`, `span.json` and the tokenizer into `out_dir`."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  graphdef, state = nnx.split(agent.model)
  state = jax.tree.map(stablehlo.host_copy, state)

  def function(*arrays):
    model = nnx.merge(graphdef, state)
    model.eval()
    spans, _, _ = precompute.window_features(
        model, dict(zip(precompute.WINDOW_INPUTS, arrays)), agent.max_answer_len)
    return tuple(spans[name] for name in OUTPUTS)

  batch, = jax.export.symbolic_shape("b")
  length = agent.features.max_seq_len
  specs = [jax.ShapeDtypeStruct((batch, length), jnp.int32) for _ in precompute.MODEL_INPUTS]
  specs.append(jax.ShapeDtypeStruct((batch, length, 2), jnp.int32))
  with attention.portable():
    exported = jax.export.export(jax.jit(function), platforms=tuple(platforms))(*specs)
  (out_dir / FUNCTION_FILE).write_bytes(exported.serialize())
  agent.tokenizer.save_pretrained(str(out_dir))
  meta = {"inputs": list(precompute.WINDOW_INPUTS), "outputs": list(OUTPUTS),
          "features": dataclasses.asdict(agent.features), "max_answer_len": agent.max_answer_len,
          "null_threshold": agent.null_threshold, "platforms": list(platforms),
          "tokenizer_fingerprint": tokenizer_fingerprint(agent.tokenizer)}
  (out_dir / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
  return out_dir


def compute(export_dir: str | pathlib.Path, agent: str, examples: list[Example], *,
            batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """Agent `agent`'s (statistics `[E, S]`, hidden states `[E, H]`) on `examples`, from the export.

  Raises loader.ExportError when the export has no such agent or its tokenizer
  is not the one it was exported with.
  """
  directory = agent_dir(export_dir, agent)
  if not (directory / FUNCTION_FILE).is_file():
    raise loader.ExportError(f"{export_dir} has no feature function of agent {agent!r} "
                             f"({directory / FUNCTION_FILE}); give its features with "
                             "--agent-features FILE")
  loader.verify_export(export_dir)
  meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
  tokenizer = load_tokenizer(directory)
  if tokenizer_fingerprint(tokenizer) != meta["tokenizer_fingerprint"]:
    raise loader.ExportError(f"the tokenizer in {directory} is not the one agent {agent!r} was "
                             "exported with (fingerprints differ)")
  features = make_features(examples, tokenizer, FeatureParams(**meta["features"]))
  call = jax.jit(jax.export.deserialize(bytearray((directory / FUNCTION_FILE).read_bytes())).call)
  batches = []
  for rows, padded in padded_batches(features.num_features, batch_size):
    outputs = call(*(getattr(features, name)[padded] for name in meta["inputs"]))
    batches.append({name: np.asarray(x)[:len(rows)] for name, x in zip(meta["outputs"], outputs)})
  windows = {name: np.concatenate([b[name] for b in batches]) for name in meta["outputs"]}
  decoded, per_question = precompute.question_features(
      windows, features.example_index_F, features.offsets_FxLx2, [e.context for e in examples],
      meta["null_threshold"])
  per_question.update(answer_statistics.answer_statistics(decoded.text))
  return (np.stack([per_question[name] for name in store_lib.STATISTICS], axis=1),
          per_question[store_lib.HIDDEN_FIELD])

