"""Loads and calls an exported rejector's routing function with nothing but JAX and NumPy.

A deployed router should not need the framework that trained it. This module
therefore imports only the standard library, `jax` and `numpy` (never
`l2d_jax`, Flax or the tokenizers), and the exporter copies it verbatim into
every export directory as `load_router.py`:

    import sys; sys.path.insert(0, EXPORT_DIR)
    from load_router import Router
    router = Router(EXPORT_DIR)
    logits_BxJ, agent_B = router(input_ids=..., attention_mask=..., token_type_ids=...)

`router.stablehlo` is a `jax.export` serialization with the weights baked in
as constants, so calling it needs the inputs alone; `router.json` names the
inputs with their dtypes and shapes (`input_specs`), the feature sources they
come from (`sources`) and the agents. Token ids must come from the tokenizer
saved beside them, windowed as `router.json` says (l2d_jax's
`rejector_inputs`: the question, then the start of the context); a router that
reads agents' features takes them as `agent_features`, float32 `[b, F]`, each
agent's statistics (`store.STATISTICS`) then pooled hidden state in the order
its `sources` record lists them (l2d_jax's `agents.feature_file` and
`export.agent_features` make them).

An export verifies itself: `export_manifest.json`, written last, records the
format version and the size and SHA-256 of every other file in the directory.
`Router` checks them all before it reads anything (`verify_export`; call it
yourself before `BertForSequenceClassification.from_pretrained(EXPORT_DIR)`),
so a damaged, truncated, replaced or half-written file is an `ExportError`
naming it, never a silent misroute. Logits that are NaN or infinite are an
`ExportError` too: no agent is chosen from them.
"""

import hashlib
import json
import pathlib
import re

import jax
import numpy as np

ROUTER_FILE = "router.stablehlo"
META_FILE = "router.json"
MANIFEST_FILE = "export_manifest.json"
MANIFEST_FORMAT = "l2d_jax rejector export"
FORMAT_VERSION = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ExportError(ValueError):
  """An export directory that is incomplete, damaged or not one this loader reads."""


def file_sha256(path: pathlib.Path) -> str:
  """The hex SHA-256 of a file's bytes."""
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def verify_export(export_dir: str | pathlib.Path,
                  required: tuple[str, ...] = (ROUTER_FILE, META_FILE)) -> dict:
  """Checks every file `export_manifest.json` lists (size, SHA-256); returns the manifest.

  Raises ExportError naming the file that is missing, truncated or altered, a
  manifest that is absent (an export that did not finish, or one made before
  exports carried checksums: export it again), unreadable or of another format,
  or one that does not list every file of `required`. Files the manifest does
  not list are not checked and never read by this loader.
  """
  export_dir = pathlib.Path(export_dir)
  path = export_dir / MANIFEST_FILE
  if not path.is_file():
    raise ExportError(f"{export_dir} has no {MANIFEST_FILE}: not a rejector export, or one "
                      f"that did not finish writing or predates checksums (export it again)")
  try:
    manifest = json.loads(path.read_text(encoding="utf-8"))
  except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
    raise ExportError(f"{path}: unreadable export manifest ({err})") from None
  files = manifest.get("files") if isinstance(manifest, dict) else None
  if (not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT
      or manifest.get("format_version") != FORMAT_VERSION or not isinstance(files, dict)):
    raise ExportError(f"{path}: not an export manifest of format {MANIFEST_FORMAT!r} version "
                      f"{FORMAT_VERSION} (damaged, or written by another version)")
  for name in required:
    if name not in files:
      raise ExportError(f"{path} does not list {name}")
  for name, record in files.items():
    if (not isinstance(record, dict) or type(record.get("bytes")) is not int
        or not _SHA256.fullmatch(str(record.get("sha256"))) or pathlib.PurePath(name).is_absolute()
        or ".." in pathlib.PurePath(name).parts or name == MANIFEST_FILE):
      raise ExportError(f"{path}: malformed entry for {name!r}")
    file = export_dir / name
    if not file.is_file():
      raise ExportError(f"{file}: listed in {MANIFEST_FILE} but missing")
    size = file.stat().st_size
    if size != record["bytes"]:
      raise ExportError(f"{file}: {size} bytes, {MANIFEST_FILE} records {record['bytes']} "
                        f"(truncated, damaged or replaced)")
    if file_sha256(file) != record["sha256"]:
      raise ExportError(f"{file}: SHA-256 differs from the one {MANIFEST_FILE} records "
                        f"(damaged or replaced)")
  return manifest


def _router_record(path: pathlib.Path) -> dict:
  """router.json, checked to be of this format version and to hold what `Router` reads."""
  try:
    meta = json.loads(path.read_text(encoding="utf-8"))
  except ValueError as err:
    raise ExportError(f"{path}: unreadable router record ({err})") from None
  if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
    raise ExportError(f"{path}: not a router record of format version {FORMAT_VERSION}")
  kinds = {"agent_names": list, "inputs": list, "max_seq_len": int, "max_query_len": int}
  wrong = [key for key, kind in kinds.items() if not isinstance(meta.get(key), kind)]
  specs = meta.get("input_specs")  # absent from exports that read token ids only
  if specs is not None and not (isinstance(specs, dict) and set(specs) == set(meta["inputs"])
                                and all(s.get("dtype") in ("int32", "float32")
                                        for s in specs.values())):
    wrong.append("input_specs")
  if wrong:
    raise ExportError(f"{path}: missing or malformed {', '.join(wrong)}")
  return meta


class Router:
  """An exported routing function: its inputs `[b, ...]` -> (logits `[b, J]`, agent `[b]`)."""

  def __init__(self, export_dir: str | pathlib.Path):
    export_dir = pathlib.Path(export_dir)
    if not export_dir.is_dir():
      raise ExportError(f"{export_dir} is not a directory: no rejector export there")
    self.manifest = verify_export(export_dir)
    meta_path, self.blob_path = export_dir / META_FILE, export_dir / ROUTER_FILE
    self.meta = _router_record(meta_path)
    names, inputs = self.meta["agent_names"], self.meta["inputs"]
    try:
      self.exported = jax.export.deserialize(bytearray(self.blob_path.read_bytes()))
    except Exception as err:  # pylint: disable=broad-except; any failure of foreign bytes
      raise ExportError(f"{self.blob_path}: not a jax.export artifact this JAX reads "
                        f"({type(err).__name__}: {err})") from None
    if (len(self.exported.in_avals), len(self.exported.out_avals)) != (len(inputs), 2):
      raise ExportError(f"{self.blob_path}: takes {len(self.exported.in_avals)} inputs and gives "
                        f"{len(self.exported.out_avals)} outputs; {meta_path} names {inputs} "
                        f"and (logits, agent) for {len(names)} agents")
    self._call = jax.jit(self.exported.call)

  @property
  def agent_names(self) -> list[str]:
    return list(self.meta["agent_names"])

  @property
  def max_seq_len(self) -> int:
    return int(self.meta["max_seq_len"])

  @property
  def input_specs(self) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each input's dtype and shape without the batch axis, in call order."""
    specs = self.meta.get("input_specs") or {  # older exports: token ids only
        name: {"dtype": "int32", "shape": [self.max_seq_len]} for name in self.meta["inputs"]}
    return {name: (specs[name]["dtype"], tuple(specs[name]["shape"]))
            for name in self.meta["inputs"]}

  def __call__(self, **inputs_BxL: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits `float32[b, J]` and the chosen agent `int32[b]` (argmax, ties to the lowest index).

    Takes the inputs named in `router.json` (input_ids, attention_mask,
    token_type_ids as `[b, max_seq_len]` integer arrays, padding after the
    tokens; agent_features as a `[b, F]` float array), any b. Raises ExportError
    when a row's logits are not all finite: no agent is chosen then.
    """
    specs = self.input_specs
    names = list(specs)
    if sorted(inputs_BxL) != sorted(names):
      raise ValueError(f"the router takes exactly the inputs {names}, got {sorted(inputs_BxL)}")
    arrays = [np.asarray(inputs_BxL[name], dtype=specs[name][0]) for name in names]
    for name, array in zip(names, arrays):
      shape = specs[name][1]
      if array.shape[1:] != shape or array.ndim != 1 + len(shape):
        raise ValueError(f"input {name!r} must be [batch, {', '.join(map(str, shape))}], "
                         f"got shape {array.shape}")
      if len(array) != len(arrays[0]):
        raise ValueError(f"input {name!r} has {len(array)} rows, {names[0]!r} has "
                         f"{len(arrays[0])}")
      padding_first = np.diff((array != 0).astype(np.int8), axis=1) > 0
      if name == "attention_mask" and padding_first.any():
        raise ValueError("attention_mask rows must be tokens first, then padding (1s then 0s): "
                         "the encoder reads each row's length")
    logits_BxJ, agent_B = (np.asarray(x) for x in self._call(*arrays))
    if logits_BxJ.shape != (len(arrays[0]), len(self.agent_names)):
      raise ExportError(f"{self.blob_path} gave logits of shape {logits_BxJ.shape} for "
                        f"{len(arrays[0])} rows and {len(self.agent_names)} agents")
    bad_B = ~np.isfinite(logits_BxJ).all(axis=1)
    if bad_B.any():
      raise ExportError(f"{self.blob_path} gave NaN or infinite logits for {bad_B.sum()} of "
                        f"{len(bad_B)} rows (first: row {bad_B.argmax()}); no agent is chosen "
                        f"from them")
    return logits_BxJ, agent_B
