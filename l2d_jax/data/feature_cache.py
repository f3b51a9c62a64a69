"""An on-disk cache of tokenized features, keyed by data, tokenizer and window parameters.

Every stage that reads windows (fine-tuning, precompute, the rejector) asks for
the same features again; tokenizing a large corpus takes longer than loading
arrays. An entry is a directory of `.npy` arrays and a `manifest.json` (format
version, fingerprints, parameters, counts, and each file's sha256, shape and
dtype). It is written to a temporary directory and renamed into place, so a
reader never sees half an entry; an entry that fails any check on load (missing
or altered file, foreign manifest) is logged, deleted and rebuilt, never used.
"""

import dataclasses
import hashlib
import io
import json
import logging
import os
import pathlib
import shutil
import tempfile
from collections.abc import Sequence

import numpy as np
import transformers

from l2d_jax.data import features as features_lib
from l2d_jax.data import tokenizer as tokenizer_lib
from l2d_jax.data.example import Example

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_EXAMPLE_IDS = "example_ids"

log = logging.getLogger(__name__)


class _UnusableEntry(Exception):
  """A cache entry that is absent, partial, altered or for other inputs."""


def examples_fingerprint(examples: Sequence[Example]) -> str:
  """A hex sha256 of everything in `examples` that features depend on, in order.

  Ids, contexts, questions, answers (text and offset) and the unanswerable /
  no-evidence flags; titles do not change features and are left out.
  """
  digest = hashlib.sha256()
  for e in examples:
    record = [e.id, e.context, e.question, [[a.text, a.start] for a in e.answers],
              e.is_impossible, e.no_evidence]
    digest.update(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
  return digest.hexdigest()


def cached_features(examples: Sequence[Example], tokenizer: transformers.PreTrainedTokenizerFast,
                    params: features_lib.FeatureParams,
                    cache_dir: str | os.PathLike) -> features_lib.Features:
  """The features of `examples`: from a valid entry in `cache_dir`, else built and saved there.

  A hit returns exactly the arrays a fresh `make_features` call would.
  """
  header = {
      "format_version": FORMAT_VERSION,
      "data_fingerprint": examples_fingerprint(examples),
      "tokenizer_fingerprint": tokenizer_lib.tokenizer_fingerprint(tokenizer),
      "params": dataclasses.asdict(params),
  }
  key = hashlib.sha256(json.dumps(header, sort_keys=True).encode("utf-8")).hexdigest()
  cache_dir = pathlib.Path(cache_dir)
  entry = cache_dir / f"features-{key[:32]}"
  if entry.exists():
    try:
      features = _load(entry, header)
      log.info("feature cache hit: %s (%d features)", entry, features.num_features)
      return features
    except _UnusableEntry as reason:
      log.warning("feature cache entry %s is unusable (%s); rebuilding it", entry, reason)
      shutil.rmtree(entry, ignore_errors=True)
  features = features_lib.make_features(examples, tokenizer, params)
  _save(features, entry, header)
  log.info("feature cache miss: built and saved %s (%d features)", entry, features.num_features)
  return features


def _save(features: features_lib.Features, entry: pathlib.Path, header: dict) -> None:
  """Writes `features` to `entry` atomically: a temporary sibling directory, then a rename."""
  entry.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-", dir=entry.parent))
  try:
    arrays = {**features.arrays(), _EXAMPLE_IDS: np.array(features.example_ids, dtype=str)}
    files = {}
    for name, array in arrays.items():
      buffer = io.BytesIO()
      np.save(buffer, array, allow_pickle=False)
      (staging / f"{name}.npy").write_bytes(buffer.getvalue())
      files[f"{name}.npy"] = {"sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
                              "shape": list(array.shape), "dtype": array.dtype.str}
    manifest = {**header, "num_examples": features.num_examples,
                "num_features": features.num_features, "files": files}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                    encoding="utf-8")
    staging.rename(entry)
  except OSError as error:
    # Most likely another process saved the same entry first; theirs is as good as ours.
    log.warning("could not save feature cache entry %s: %s", entry, error)
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def _load(entry: pathlib.Path, header: dict) -> features_lib.Features:
  """Reads an entry after checking its manifest against `header` and every file's sha256."""
  try:
    manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
  except (OSError, ValueError) as error:
    raise _UnusableEntry(f"{MANIFEST} unreadable: {error}") from None
  if not isinstance(manifest, dict):
    raise _UnusableEntry(f"{MANIFEST} is not a JSON object")
  for field, expected in header.items():
    if manifest.get(field) != expected:
      raise _UnusableEntry(f"{MANIFEST}: {field} is {manifest.get(field)!r}, expected "
                           f"{expected!r}")
  expected_files = {f"{name}.npy" for name in (*features_lib.Features.ARRAY_FIELDS, _EXAMPLE_IDS)}
  files = manifest.get("files")
  if (not isinstance(files, dict) or set(files) != expected_files or
      not all(isinstance(spec, dict) for spec in files.values())):
    raise _UnusableEntry(f"{MANIFEST} does not list the expected files")
  arrays = {name.removesuffix(".npy"): _load_array(entry / name, spec)
            for name, spec in files.items()}
  example_ids = arrays.pop(_EXAMPLE_IDS).tolist()
  features = features_lib.Features(**arrays, example_ids=example_ids,
                                   params=features_lib.FeatureParams(**header["params"]))
  if (features.num_examples, features.num_features) != (manifest.get("num_examples"),
                                                         manifest.get("num_features")):
    raise _UnusableEntry(f"example or feature count differs from {MANIFEST}")
  return features


def _load_array(path: pathlib.Path, spec: dict) -> np.ndarray:
  """One array file, checked against its manifest sha256, shape and dtype."""
  try:
    raw = path.read_bytes()
  except OSError as error:
    raise _UnusableEntry(f"{path.name} unreadable: {error}") from None
  if hashlib.sha256(raw).hexdigest() != spec.get("sha256"):
    raise _UnusableEntry(f"{path.name} does not match the sha256 {MANIFEST} records")
  array = np.load(io.BytesIO(raw), allow_pickle=False)
  if list(array.shape) != spec.get("shape") or array.dtype.str != spec.get("dtype"):
    raise _UnusableEntry(f"{path.name} has shape {array.shape} and dtype {array.dtype.str}, "
                         f"{MANIFEST} records {spec.get('shape')} and {spec.get('dtype')}")
  return array
