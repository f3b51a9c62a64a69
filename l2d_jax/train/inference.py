"""A module applied to every row of a table, in global batches over the mesh.

The rejector's logits, the frozen encoder's pooled features: each is one
jitted function of (module state, batch) with the batch sharded on `data` and
the result replicated, run over fixed-size batches (the last one padded, so it
compiles once) whose rows each process feeds from its own share.
"""

from collections.abc import Callable

import jax
import numpy as np
from flax import nnx

from l2d_jax.train import mesh as mesh_lib


def apply_in_batches(model: nnx.Module, fn: Callable[[nnx.Module, dict], jax.Array],
                     inputs: dict[str, np.ndarray], *, mesh=None,
                     batch_size: int = 64) -> np.ndarray:
  """`fn(model, batch)` over all rows of `inputs` (eval mode), concatenated in row order."""
  mesh = mesh or mesh_lib.make_mesh()
  batch_size = -(-batch_size // mesh.size) * mesh.size
  graphdef, state = nnx.split(model)

  def forward(state, batch):
    model = nnx.merge(graphdef, state, copy=True)
    model.eval()
    return fn(model, batch)

  step = jax.jit(forward, in_shardings=(mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)),
                 out_shardings=mesh_lib.replicated(mesh))
  state = mesh_lib.replicate(mesh, state)
  num_rows = len(next(iter(inputs.values())))
  outputs = []
  for lo in range(0, num_rows, batch_size):
    rows = np.arange(lo, min(lo + batch_size, num_rows))
    padded = np.concatenate([rows, np.full(batch_size - len(rows), rows[0])])
    local = mesh_lib.local_rows(padded, mesh)
    batch = mesh_lib.shard_batch(mesh, {k: v[local] for k, v in inputs.items()})
    outputs.append(np.asarray(step(state, batch))[:len(rows)])
  return np.concatenate(outputs)
