"""Serializes a rejector's routing function as a `jax.export` artifact (StableHLO).

The artifact maps the rejector's inputs (`Rejector.input_specs`, in order: for
the text source int32 `input_ids`, `attention_mask` and `token_type_ids`
`[b, L]`, for the agent-feature source float32 `agent_features` `[b, F]`) to
the logits `float32[b, J]` and the chosen agent `int32[b]`. The batch size b is
symbolic, so one artifact serves any batch; the other dimensions are fixed
(the sequence length L to the rejector's `max_seq_len`, the only length it was
trained on). `router.json` names each input with its dtype and shape, and
describes each feature source (`Rejector.records`).

The weights are baked into the program as constants rather than passed as an
argument: the loader then needs no parameter file, no pytree structure and no
Flax, only `jax.export.deserialize(blob).call(*inputs)`
(`l2d_jax.export.loader`, copied beside the artifact). The price is an artifact
about as large as the fp32 weights (90 MB for MiniLM-L6), which is the size of
`model.safetensors` anyway. It is lowered for CPU and CUDA by default, so the
same file runs on either.
"""

import json
import pathlib
import shutil
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from l2d_jax.defer import policy
from l2d_jax.export import hf, loader
from l2d_jax.models import attention
from l2d_jax.rejector.ensemble import AnyRejector

LOADER_FILE = "load_router.py"
PLATFORMS = ("cpu", "cuda")


def routing_function(model: AnyRejector):
  """`route(*inputs) -> (logits_BxJ, agent_B)` in eval mode, the inputs in `input_specs` order,
  with the model's current weights captured as host constants."""
  graphdef, state = nnx.split(model)
  state = jax.tree.map(host_copy, state)
  names = list(model.input_specs)

  def route(*inputs):
    module = nnx.merge(graphdef, state)
    logits_BxJ = module(dict(zip(names, inputs)), deterministic=True)
    return logits_BxJ, policy.allocate(logits_BxJ)

  return route


def host_copy(x: jax.Array) -> np.ndarray | jax.Array:
  """A host copy of a (possibly replicated or sharded) array, so jit embeds it as a constant.

  PRNG keys (the dropout streams, unused at inference) stay keys, on one device.
  """
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(np.asarray(jax.random.key_data(x)),
                                    impl=jax.random.key_impl(x))
  return np.asarray(x)


def export_router_bytes(model: AnyRejector, *, platforms: Sequence[str] = PLATFORMS) -> bytes:
  """The serialized `jax.export` artifact of the routing function, batch size symbolic.

  Traced with portable attention (`models.attention.portable`): a kernel chosen
  for the exporting machine (cuDNN on a GPU) would not run on the other platforms.
  """
  batch, = jax.export.symbolic_shape("b")
  specs = [jax.ShapeDtypeStruct((batch, *shape), jnp.dtype(dtype))
           for dtype, shape in model.input_specs.values()]
  with attention.portable():
    exported = jax.export.export(jax.jit(routing_function(model)), platforms=tuple(platforms))(
        *specs)
  return bytes(exported.serialize())


def export_router(model: AnyRejector, out_dir: str | pathlib.Path, *,
                  agent_names: Sequence[str], max_seq_len: int, max_query_len: int,
                  tokenizer_fingerprint: str,
                  platforms: Sequence[str] = PLATFORMS) -> pathlib.Path:
  """Writes `router.stablehlo`, `router.json` and the standalone `load_router.py` into `out_dir`.

  `router.json` records what a caller needs to build the inputs: their names,
  order, dtypes and shapes, the feature sources they come from, `max_seq_len`,
  the `max_query_len` the question was truncated to, and the fingerprint of the
  tokenizer (saved beside it) that made the token ids in training.
  """
  hf.check_agent_names(agent_names, model.num_labels)
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / loader.ROUTER_FILE).write_bytes(
      export_router_bytes(model, platforms=platforms))
  meta = {
      "format_version": loader.FORMAT_VERSION,
      "inputs": list(model.input_specs),
      "input_specs": {name: {"dtype": dtype, "shape": list(shape)}
                      for name, (dtype, shape) in model.input_specs.items()},
      "sources": model.records(),
      "max_seq_len": max_seq_len,
      "max_query_len": max_query_len,
      "outputs": ["logits", "agent"],
      "agent_names": list(agent_names),
      "weights": "constants",
      "platforms": list(platforms),
      "tokenizer_fingerprint": tokenizer_fingerprint,
      "jax_version": jax.__version__,
  }
  (out_dir / loader.META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
  shutil.copyfile(loader.__file__, out_dir / LOADER_FILE)
  return out_dir
