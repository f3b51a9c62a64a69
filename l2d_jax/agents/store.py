"""The agent store: what every agent said about every question, computed once, on disk.

Layout (one directory per agent; every file written to a temporary name, then renamed):

  STORE/AGENT/manifest.json      format version, agent kind, fingerprints (data,
                                 tokenizer, model), feature params, costs, counts,
                                 `complete` once every chunk is written, then the
                                 SHA-256 of every chunk file (`files`) and of the
                                 manifest's own content (`manifest_sha256`)
  STORE/AGENT/chunk-00000.npz    a range of whole questions: their windows' start/end
                                 logits [F_c, 2, L] (bf16 by default, stored as raw bits),
                                 window -> question index, gold start/end positions,
                                 and per question EM, F1, span NLL, null score,
                                 best-span probability; for model agents also the
                                 agent features a rejector may read (SPAN_STATISTICS
                                 and the pooled hidden state HIDDEN_FIELD; the
                                 answer statistics are derived from the answer
                                 texts on reading)
  STORE/AGENT/chunk-00000.json   the answer text of each question of the chunk

Chunks hold whole questions, so each chunk is decoded and scored on its own and
a killed precompute resumes at the first chunk that is not on disk. Readers
check fingerprints: a store made from other data or another tokenizer is an
error, not a silent misuse; a store whose chunks record other fields than the
writer's (`Fingerprints.recorded`, e.g. made before agent features were
recorded) is recomputed. `AgentStore.example_table` reads a row range only
(one process's shard of the questions).

Readers also check integrity: a manifest whose content does not match its
checksum, and a chunk file whose SHA-256 is not the one the manifest records
(checked the first time a reader opens it), is a `StoreMismatchError` naming
the file; a damaged store is never read.
"""

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import tempfile

import ml_dtypes
import numpy as np

from l2d_jax.agents import answer_statistics
from l2d_jax.errors import UserError

FORMAT_VERSION = 1
LOGIT_DTYPES = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16, "float32": np.float32}
EXAMPLE_FIELDS = ("em_E", "f1_E", "span_nll_E", "null_score_E", "score_E", "prob_E")
# A model agent's own view of each question (see `decode.span_statistics`), float32 [E] each:
SPAN_STATISTICS = ("best_prob_E", "top2_margin_E", "start_entropy_E", "end_entropy_E",
                   "null_margin_E", "num_windows_E")
HIDDEN_FIELD = "hidden_ExH"  # its pooled final hidden state, float32 [E, H]
# What a rejector reads as a model agent's statistics: the stored span statistics, then
# those derived from its answer text when read (`answer_statistics`).
STATISTICS = SPAN_STATISTICS + answer_statistics.NAMES


class StoreMismatchError(UserError, ValueError):
  """The store was made from other data, another tokenizer or another model than expected,
  did not finish, or is damaged."""


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
  """Writes `data` to `path` so that readers see the old file or the whole new one."""
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def atomic_write_json(path: pathlib.Path, obj) -> None:
  atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode("utf-8"))


def read_manifest(path: pathlib.Path) -> dict:
  """An agent's manifest.json as a dict; unreadable or not an object: StoreMismatchError."""
  try:
    manifest = json.loads(path.read_text(encoding="utf-8"))
  except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
    raise StoreMismatchError(f"{path}: damaged manifest ({err}); remove {path.parent} and run "
                             "precompute again") from None
  if not isinstance(manifest, dict):
    raise StoreMismatchError(f"{path}: damaged manifest (not a JSON object)")
  return manifest


def _manifest_sha256(manifest: dict) -> str:
  """The SHA-256 of a manifest's content, leaving out the field that records it."""
  content = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
  return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


def _file_sha256(path: pathlib.Path) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


@dataclasses.dataclass(frozen=True)
class Fingerprints:
  """What an agent's outputs depend on; readers compare the fields they know.

  `recorded` names what the chunks hold beyond EXAMPLE_FIELDS (set by the
  writing code, e.g. `precompute.RECORDED`): when it changes, existing chunks
  are outdated and `AgentWriter` starts the agent again.
  """
  data: str
  tokenizer: str = ""
  model: str = ""
  recorded: str = ""


class AgentWriter:
  """Writes one agent's chunks; `done_chunks()` says where a restarted precompute resumes."""

  def __init__(self, store_dir: str | pathlib.Path, agent: str, *, kind: str,
               fingerprints: Fingerprints, num_examples: int, chunk_examples: int,
               params: dict | None = None, logits_dtype: str = "bfloat16"):
    if logits_dtype not in LOGIT_DTYPES:
      raise ValueError(f"logits dtype {logits_dtype!r} not in {sorted(LOGIT_DTYPES)}")
    self.dir = pathlib.Path(store_dir) / agent
    self.dir.mkdir(parents=True, exist_ok=True)
    self.manifest = {
        "format_version": FORMAT_VERSION, "agent": agent, "kind": kind,
        "fingerprints": dataclasses.asdict(fingerprints), "num_examples": num_examples,
        "chunk_examples": chunk_examples, "logits_dtype": logits_dtype,
        "params": params or {}, "complete": False,
    }
    existing = self.dir / "manifest.json"
    if existing.exists():
      old = read_manifest(existing)
      old["fingerprints"] = {"recorded": "", **old.get("fingerprints", {})}  # older stores
      same = lambda manifest: ({k: manifest.get(k) for k in self.manifest if k != "complete"}
                               == {k: v for k, v in self.manifest.items() if k != "complete"})
      if same(old):
        self.manifest = old
      elif same({**old, "fingerprints": {**old["fingerprints"],
                                         "recorded": fingerprints.recorded}}):
        logging.warning("%s records %r, not %r: recomputing agent %r", self.dir,
                        old["fingerprints"]["recorded"], fingerprints.recorded, agent)
        for path in [*self.dir.glob("chunk-*"), self.dir / "predictions.json"]:
          path.unlink(missing_ok=True)
        atomic_write_json(existing, self.manifest)
      else:
        raise StoreMismatchError(
            f"{existing} was written with other settings; remove the directory to recompute "
            f"(stored: {json.dumps({k: old.get(k) for k in ('fingerprints', 'params')})})")
    else:
      atomic_write_json(existing, self.manifest)

  @property
  def num_chunks(self) -> int:
    return -(-self.manifest["num_examples"] // self.manifest["chunk_examples"])

  def chunk_rows(self, c: int) -> slice:
    """The questions (rows) chunk `c` holds."""
    size = self.manifest["chunk_examples"]
    return slice(c * size, min((c + 1) * size, self.manifest["num_examples"]))

  def done_chunks(self) -> set[int]:
    return {c for c in range(self.num_chunks) if (self.dir / f"chunk-{c:05d}.json").exists()}

  def write_chunk(self, c: int, *, texts: list[str], examples: dict[str, np.ndarray],
                  start_end_logits_Fx2xL: np.ndarray | None = None,
                  window_example_F: np.ndarray | None = None,
                  gold_Fx2: np.ndarray | None = None,
                  agent_features: dict[str, np.ndarray] | None = None) -> None:
    """Writes chunk `c` (arrays first, then the JSON whose presence marks the chunk done).

    `agent_features` holds SPAN_STATISTICS and HIDDEN_FIELD (model agents).
    """
    rows = self.chunk_rows(c)
    n = rows.stop - rows.start
    per_question = {**examples, **(agent_features or {})}
    fields = EXAMPLE_FIELDS + ((*SPAN_STATISTICS, HIDDEN_FIELD) if agent_features else ())
    if len(texts) != n or any(len(per_question[k]) != n for k in fields):
      raise ValueError(f"chunk {c} of {self.dir}: expected {n} questions in every field")
    arrays = {k: np.asarray(per_question[k], np.float32) for k in fields}
    if start_end_logits_Fx2xL is not None:
      dtype = LOGIT_DTYPES[self.manifest["logits_dtype"]]
      bits = np.asarray(start_end_logits_Fx2xL).astype(dtype)
      arrays["logits_Fx2xL"] = bits.view(np.uint16) if dtype == ml_dtypes.bfloat16 else bits
      arrays["window_example_F"] = np.asarray(window_example_F, np.int32)
      arrays["gold_Fx2"] = np.asarray(gold_Fx2, np.int32)
    with tempfile.NamedTemporaryFile(dir=self.dir, suffix=".npz", delete=False) as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(f.name, self.dir / f"chunk-{c:05d}.npz")
    atomic_write_json(self.dir / f"chunk-{c:05d}.json", {"texts": texts})

  def finish(self, **extra) -> None:
    """Marks the agent complete (every chunk on disk) and records `extra` (costs, threshold).

    Also records the SHA-256 of every chunk file, whatever arrays it holds, and
    of the manifest itself, which readers check.
    """
    missing = set(range(self.num_chunks)) - self.done_chunks()
    if missing:
      raise ValueError(f"{self.dir}: chunks {sorted(missing)[:5]} are missing")
    files = {path.name: _file_sha256(path) for path in sorted(self.dir.glob("chunk-*"))}
    self.manifest.update(extra, complete=True, files=files)
    self.manifest["manifest_sha256"] = _manifest_sha256(self.manifest)
    atomic_write_json(self.dir / "manifest.json", self.manifest)


class AgentStore:
  """Reads the agents of a store directory, checking them against the expected data."""

  def __init__(self, store_dir: str | pathlib.Path, agents: list[str], *,
               data_fingerprint: str | None = None):
    self.dir = pathlib.Path(store_dir)
    self.agents = list(agents)
    self.manifests = {}
    self._verified: set[pathlib.Path] = set()  # chunk files whose SHA-256 was checked
    for agent in self.agents:
      path = self.dir / agent / "manifest.json"
      if not path.exists():
        raise FileNotFoundError(f"agent {agent!r} has no outputs in {self.dir} (run precompute)")
      manifest = read_manifest(path)
      if manifest.get("format_version") != FORMAT_VERSION:
        raise StoreMismatchError(f"{path}: format version {manifest.get('format_version')}, "
                                 f"expected {FORMAT_VERSION}")
      if manifest.get("complete") is not True:
        raise StoreMismatchError(f"{path}: precompute of agent {agent!r} did not finish")
      if manifest.get("manifest_sha256") != _manifest_sha256(manifest):
        problem = ("damaged, its content does not match its checksum" if "manifest_sha256" in
                   manifest else "written before stores carried checksums")
        raise StoreMismatchError(f"{path}: {problem}; remove {path.parent} and run precompute "
                                 "again")
      if data_fingerprint is not None and manifest["fingerprints"]["data"] != data_fingerprint:
        raise StoreMismatchError(
            f"{path}: agent {agent!r} was computed on other data (fingerprint "
            f"{manifest['fingerprints']['data']}, expected {data_fingerprint})")
      self.manifests[agent] = manifest
    counts = {m["num_examples"] for m in self.manifests.values()}
    if len(counts) > 1:
      raise StoreMismatchError(f"agents of {self.dir} cover different numbers of questions: "
                               f"{counts}")
    self.num_examples = counts.pop() if counts else 0

  def _chunk_file(self, agent: str, name: str) -> pathlib.Path:
    """The path of one of `agent`'s chunk files, its SHA-256 checked when first asked for."""
    path = self.dir / agent / name
    if path not in self._verified:
      recorded = self.manifests[agent]["files"].get(name)
      if recorded is None or not path.is_file():
        problem = "missing" if recorded else "not listed in its manifest"
        raise StoreMismatchError(f"{path}: {problem}; remove {path.parent} and run precompute "
                                 "again")
      if _file_sha256(path) != recorded:
        raise StoreMismatchError(f"{path}: damaged, its SHA-256 is not the one manifest.json "
                                 f"records; remove {path.parent} and run precompute again")
      self._verified.add(path)
    return path

  def _chunks(self, agent: str, rows: slice):
    size = self.manifests[agent]["chunk_examples"]
    for c in range(rows.start // size, -(-rows.stop // size)):
      lo, hi = c * size, min((c + 1) * size, self.num_examples)
      yield c, slice(max(rows.start, lo) - lo, min(rows.stop, hi) - lo)

  def example_table(self, field: str, rows: slice | None = None) -> np.ndarray:
    """`field` (one of EXAMPLE_FIELDS) for questions `rows`, agents as columns: [E, J] float32."""
    rows = rows or slice(0, self.num_examples)
    columns = []
    for agent in self.agents:
      parts = [np.load(self._chunk_file(agent, f"chunk-{c:05d}.npz"))[field][part]
               for c, part in self._chunks(agent, rows)]
      columns.append(np.concatenate(parts) if parts else np.zeros(0, np.float32))
    return np.stack(columns, axis=1)

  def agent_features(self, agent: str, rows: slice | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Model agent `agent`'s STATISTICS `[E, S]` and pooled hidden states `[E, H]`, float32.

    The span statistics are stored; the answer statistics are derived from the
    stored answer texts (`answer_statistics`).
    """
    rows = rows or slice(0, self.num_examples)
    statistics, hidden = [], []
    for c, part in self._chunks(agent, rows):
      with np.load(self._chunk_file(agent, f"chunk-{c:05d}.npz")) as z:
        if HIDDEN_FIELD not in z:
          raise StoreMismatchError(
              f"{self.dir / agent}: agent {agent!r} ({self.manifests[agent]['kind']}) records no "
              "agent features; only model agents precomputed with them do (rerun precompute)")
        columns = {k: z[k][part] for k in SPAN_STATISTICS}
        hidden.append(z[HIDDEN_FIELD][part])
      columns.update(answer_statistics.answer_statistics(self._chunk_texts(agent, c)[part]))
      statistics.append(np.stack([columns[k] for k in STATISTICS], axis=1))
    if not statistics:
      return np.zeros((0, len(STATISTICS)), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(statistics), np.concatenate(hidden)

  def _chunk_texts(self, agent: str, c: int) -> list[str]:
    path = self._chunk_file(agent, f"chunk-{c:05d}.json")
    return json.loads(path.read_text(encoding="utf-8"))["texts"]

  def answers(self, agent: str) -> list[str]:
    """The answer text agent `agent` gave to each question, in order."""
    texts = []
    for c, part in self._chunks(agent, slice(0, self.num_examples)):
      texts.extend(self._chunk_texts(agent, c)[part])
    return texts

  def logits(self, agent: str, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start/end logits [F, 2, L] float32, window -> question index, gold [F, 2]) of one chunk."""
    manifest = self.manifests[agent]
    with np.load(self._chunk_file(agent, f"chunk-{chunk:05d}.npz")) as z:
      if "logits_Fx2xL" not in z:
        raise ValueError(f"agent {agent!r} ({manifest['kind']}) stores no logits")
      raw = z["logits_Fx2xL"]
      if manifest["logits_dtype"] == "bfloat16":
        raw = raw.view(ml_dtypes.bfloat16)
      return raw.astype(np.float32), z["window_example_F"], z["gold_Fx2"]
