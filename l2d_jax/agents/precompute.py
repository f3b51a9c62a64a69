"""One pass of a model agent over every window, sharded over all devices and processes.

For each chunk of questions: their windows go through the jitted forward pass
in global batches (each process feeds its rows with
`make_array_from_process_local_data`; outputs come back replicated), which also
finds each window's best span and the gold span's NLL on the device. The host
then combines windows into one answer per question, scores it (official EM/F1)
and process 0 writes the chunk to the agent store. Chunks already on disk are
skipped, so a killed precompute continues where it stopped and ends with the
same store.

Beside the answers, each question gets the agent features a rejector may read
(`RECORDED`): the span statistics of `decode.span_statistics` and the final
hidden state mean-pooled over the tokens of the window that holds the best
span (the window the answer came from, so it has read the answer's context).
They are also written, keyed by question id, to `agent_features.npz` beside
`predictions.json` (`agents.feature_file`).
"""

import dataclasses
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from l2d_jax.agents import decode
from l2d_jax.agents import feature_file
from l2d_jax.agents import store as store_lib
from l2d_jax.data.example import Example
from l2d_jax.data.features import Features
from l2d_jax.defer import costs as costs_lib
from l2d_jax.metrics import squad as squad_metric
from l2d_jax.train import inference
from l2d_jax.train import mesh as mesh_lib
from l2d_jax.train.finetune import MODEL_INPUTS
from l2d_jax.train.progress import progress


# What the store records beyond its EXAMPLE_FIELDS: a store recording anything else is recomputed.
RECORDED = ("agent-features/1: " + ",".join(store_lib.SPAN_STATISTICS)
            + f"; {store_lib.HIDDEN_FIELD} = mean over the tokens of the best span's window")


@dataclasses.dataclass(frozen=True)
class PrecomputeSettings:
  batch_size: int = 64              # global, in windows
  chunk_examples: int = 1024        # questions per store chunk
  max_answer_len: int = 30          # tokens
  null_threshold: float | None = None  # SQuAD v2: answer empty when null - best > threshold
  logits_dtype: str = "bfloat16"
  version: str = "1.1"              # metric semantics
  progress: bool = True


def forward_fn(model: nnx.Module, mesh, max_answer_len: int):
  """`call(global_batch)` -> logits, best spans and gold NLL per window, replicated."""
  return inference.sharded_apply(model, _window_outputs_fn(max_answer_len), mesh)


WINDOW_INPUTS = (*MODEL_INPUTS, "offsets_FxLx2")  # what `window_features` reads of a batch


def window_features(model: nnx.Module, batch: dict, max_answer_len: int
                    ) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
  """Per window: `decode.window_best_spans` and `hidden_FxH`, the final hidden state averaged
  over the window's tokens; also the start and end logits `[F, L]`."""
  hidden_BxLxH = model.encoder(*(batch[name] for name in MODEL_INPUTS))
  start_BxL, end_BxL = model.span_logits(hidden_BxLxH)
  context_BxL = batch["offsets_FxLx2"][..., 0] >= 0
  spans = decode.window_best_spans(start_BxL, end_BxL, context_BxL, max_answer_len)
  tokens_BxLx1 = batch["attention_mask_FxL"][..., None].astype(jnp.float32)
  spans["hidden_FxH"] = ((hidden_BxLxH.astype(jnp.float32) * tokens_BxLx1).sum(1)
                         / jnp.maximum(tokens_BxLx1.sum(1), 1.0))
  return spans, start_BxL, end_BxL


def question_features(windows: dict[str, np.ndarray], example_index_F: np.ndarray,
                      offsets_FxLx2: np.ndarray, contexts: list[str],
                      null_threshold: float | None) -> tuple[decode.Decoded, dict[str, np.ndarray]]:
  """Each question's answer and agent features (`store.SPAN_STATISTICS`, `HIDDEN_FIELD`) from
  its windows' `window_features` (`example_index_F` numbers the questions from 0)."""
  decoded = decode.decode_examples(windows, example_index_F, offsets_FxLx2, contexts,
                                   null_threshold=null_threshold)
  features = decode.span_statistics(windows, example_index_F, decoded)
  features[store_lib.HIDDEN_FIELD] = np.asarray(windows["hidden_FxH"])[decoded.best_window_E]
  return decoded, features


def write_feature_file(store: store_lib.AgentStore, agent: str, examples: list[Example]
                       ) -> pathlib.Path:
  """Writes `agent`'s features on the store's questions `examples` beside its chunks."""
  return feature_file.write(store.dir / agent / feature_file.FILE_NAME, [e.id for e in examples],
                            {agent: store.agent_features(agent)})


def refresh_feature_file(store_dir: str | pathlib.Path, agent: str, examples: list[Example]
                         ) -> None:
  """Rewrites a complete agent's features file when it is missing or holds other statistics
  than this version's (made before `store.STATISTICS` grew): they derive from the store."""
  path = pathlib.Path(store_dir) / agent / feature_file.FILE_NAME
  if jax.process_index() == 0 and not feature_file.is_current(path, agent):
    write_feature_file(store_lib.AgentStore(store_dir, [agent]), agent, examples)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"feature file {agent}")


@functools.cache
def _window_outputs_fn(max_answer_len: int):
  """`window_outputs(model, batch)`, one function object per answer length (so jit caches it)."""

  def window_outputs(model, batch):
    spans, start_BxL, end_BxL = window_features(model, batch, max_answer_len)
    valid_BxL = (batch["offsets_FxLx2"][..., 0] >= 0).at[:, 0].set(True)  # gold: context or CLS
    spans["nll_F"] = costs_lib.span_nll_FxJ(
        start_BxL[:, None], end_BxL[:, None], batch["start_positions_F"],
        batch["end_positions_F"], valid_BxL[:, None])[:, 0]
    spans["logits_Fx2xL"] = jnp.stack([start_BxL, end_BxL], axis=1)
    return spans

  return window_outputs


def _window_rows(features: Features, rows: slice) -> np.ndarray:
  """Indices of the windows of questions `rows` (windows of a question are contiguous)."""
  lo, hi = np.searchsorted(features.example_index_F, [rows.start, rows.stop])
  return np.arange(lo, hi)


def precompute_model_agent(store_dir: str | pathlib.Path, agent: str, model: nnx.Module,
                           features: Features, examples: list[Example], *,
                           fingerprints: store_lib.Fingerprints, settings: PrecomputeSettings,
                           mesh=None, extra_manifest: dict | None = None) -> pathlib.Path:
  """Writes `agent`'s outputs on `examples` (whose windows are `features`) to the store."""
  if features.example_ids != [e.id for e in examples]:
    raise store_lib.StoreMismatchError(
        f"features of agent {agent!r} were made from other questions than the ones given")
  if np.any(np.diff(features.example_index_F) < 0):
    raise ValueError("features must keep each question's windows together, in question order")
  mesh = mesh or mesh_lib.make_mesh()
  writer = store_lib.AgentWriter(
      store_dir, agent, kind="model", fingerprints=dataclasses.replace(fingerprints,
                                                                       recorded=RECORDED),
      num_examples=len(examples),
      chunk_examples=settings.chunk_examples, logits_dtype=settings.logits_dtype,
      params={"features": dataclasses.asdict(features.params),
              "max_answer_len": settings.max_answer_len,
              "null_threshold": settings.null_threshold, "version": settings.version})
  forward = forward_fn(model, mesh, settings.max_answer_len)
  todo = [c for c in range(writer.num_chunks) if c not in writer.done_chunks()]
  bar = progress(todo, desc=f"precompute {agent}", unit="chunk",
                 disable=not settings.progress or jax.process_index() != 0)
  for c in bar:
    rows = writer.chunk_rows(c)
    windows = _run_windows(forward, features, _window_rows(features, rows), settings.batch_size,
                           mesh)
    if jax.process_index() == 0:
      _write_chunk(writer, c, rows, windows, features, examples, settings)
  if jax.process_index() == 0:
    writer.finish(**(extra_manifest or {}))
    store = store_lib.AgentStore(store_dir, [agent])
    _write_predictions(store, agent, examples)
    write_feature_file(store, agent, examples)
  if jax.process_count() > 1:  # nobody reads the store before process 0 has written it
    multihost_utils.sync_global_devices(f"precompute {agent}")
  return writer.dir


def _run_windows(forward, features: Features, window_rows: np.ndarray, batch_size: int,
                 mesh) -> dict[str, np.ndarray]:
  """Forward outputs for `window_rows`, in order."""
  names = (*WINDOW_INPUTS, "start_positions_F", "end_positions_F")
  return inference.in_batches(forward, {n: getattr(features, n)[window_rows] for n in names},
                              mesh=mesh, batch_size=batch_size)


def _write_chunk(writer: store_lib.AgentWriter, c: int, rows: slice, windows: dict,
                 features: Features, examples: list[Example], settings: PrecomputeSettings):
  window_rows = _window_rows(features, rows)
  chunk_examples = examples[rows]
  local_example_F = features.example_index_F[window_rows] - rows.start
  decoded, agent_features = question_features(
      windows, local_example_F, features.offsets_FxLx2[window_rows],
      [e.context for e in chunk_examples], settings.null_threshold)
  scores = [squad_metric.example_scores(e, text, settings.version)
            for e, text in zip(chunk_examples, decoded.text)]
  gold_F = np.stack([features.start_positions_F[window_rows],
                     features.end_positions_F[window_rows]], axis=1)
  holds_gold_F = costs_lib.gold_window_mask(
      gold_F[:, 0], local_example_F, np.array([e.is_impossible for e in chunk_examples]))
  span_nll_E = costs_lib.example_span_nll_ExJ(
      windows["nll_F"][:, None], local_example_F, holds_gold_F, len(chunk_examples))[:, 0]
  writer.write_chunk(
      c, texts=decoded.text,
      examples={"em_E": np.array([s[0] for s in scores]), "f1_E": np.array([s[1] for s in scores]),
                "span_nll_E": np.asarray(span_nll_E), "null_score_E": decoded.null_score_E,
                "score_E": decoded.score_E, "prob_E": decoded.prob_E},
      start_end_logits_Fx2xL=windows["logits_Fx2xL"], window_example_F=local_example_F,
      gold_Fx2=gold_F, agent_features=agent_features)


def _write_predictions(store: store_lib.AgentStore, agent: str, examples: list[Example]) -> None:
  """`predictions.json` ({question id: answer}) beside the chunks, for `l2d-jax score`."""
  texts = store.answers(agent)
  agent_dir = store.dir / agent
  store_lib.atomic_write_json(agent_dir / "predictions.json",
                              {e.id: t for e, t in zip(examples, texts)})
