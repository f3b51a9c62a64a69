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
as constants, so calling it needs the token ids alone; `router.json` names the
inputs, the fixed sequence length and the agents. The token ids must come from
the tokenizer saved beside them, windowed as `router.json` says (l2d_jax's
`rejector_inputs`: the question, then the start of the context).
"""

import json
import pathlib

import jax
import numpy as np

ROUTER_FILE = "router.stablehlo"
META_FILE = "router.json"
FORMAT_VERSION = 1


class Router:
  """An exported routing function: int32 token ids `[b, L]` -> (logits `[b, J]`, agent `[b]`)."""

  def __init__(self, export_dir: str | pathlib.Path):
    export_dir = pathlib.Path(export_dir)
    meta_path = export_dir / META_FILE
    if not meta_path.is_file():
      raise FileNotFoundError(f"{export_dir} has no {META_FILE}: not a rejector export")
    self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if self.meta.get("format_version") != FORMAT_VERSION:
      raise ValueError(f"{meta_path}: format version {self.meta.get('format_version')!r}, "
                       f"this loader reads {FORMAT_VERSION}")
    blob_path = export_dir / ROUTER_FILE
    if not blob_path.is_file():
      raise FileNotFoundError(f"{export_dir} has no {ROUTER_FILE}")
    self.exported = jax.export.deserialize(bytearray(blob_path.read_bytes()))
    self._call = jax.jit(self.exported.call)

  @property
  def agent_names(self) -> list[str]:
    return list(self.meta["agent_names"])

  @property
  def max_seq_len(self) -> int:
    return int(self.meta["max_seq_len"])

  def __call__(self, **inputs_BxL: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits `float32[b, J]` and the chosen agent `int32[b]` (argmax, ties to the lowest index).

    Takes the inputs named in `router.json` (input_ids, attention_mask,
    token_type_ids) as `[b, max_seq_len]` integer arrays; any b works.
    """
    names = list(self.meta["inputs"])
    if sorted(inputs_BxL) != sorted(names):
      raise ValueError(f"the router takes exactly the inputs {names}, got {sorted(inputs_BxL)}")
    arrays = [np.asarray(inputs_BxL[name], dtype=np.int32) for name in names]
    for name, array in zip(names, arrays):
      if array.ndim != 2 or array.shape[1] != self.max_seq_len:
        raise ValueError(f"input {name!r} must be [batch, {self.max_seq_len}], "
                         f"got shape {array.shape}")
      if array.shape != arrays[0].shape:
        raise ValueError(f"input {name!r} has shape {array.shape}, {names[0]!r} has "
                         f"{arrays[0].shape}")
    logits_BxJ, agent_B = self._call(*arrays)
    return np.asarray(logits_BxJ), np.asarray(agent_B)
