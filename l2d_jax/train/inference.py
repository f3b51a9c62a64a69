"""A module applied to every row of a table, in global batches over the mesh.

Precompute's window outputs, the rejector's logits, the frozen encoder's pooled
features: each is one jitted function of (module state, batch) with the batch
sharded on `data` and the result replicated (`sharded_apply`, compiled once),
run over fixed-size batches (the last one padded, so shapes never change) whose
rows each process feeds from its own share (`in_batches`).
"""

from collections.abc import Callable, Iterator
import functools

import jax
import numpy as np
from flax import nnx

from l2d_jax.train import mesh as mesh_lib
from l2d_jax.train.progress import progress


def sharded_apply(model: nnx.Module, fn: Callable[[nnx.Module, dict], object], mesh
                  ) -> Callable[[dict], object]:
  """`call(global_batch)`: `fn(model, batch)` in eval mode, jitted over `mesh`, replicated out.

  The jitted function is cached per (model structure, `fn`, mesh), so evaluating
  new weights of the same model (every N training steps) does not recompile,
  as long as `fn` is the same function object (define it at module level).
  """
  graphdef, state = nnx.split(model)
  step = _jitted_apply(graphdef, fn, mesh)
  state = mesh_lib.replicate(mesh, state)
  return lambda batch: step(state, batch)


@functools.lru_cache(maxsize=64)
def _jitted_apply(graphdef, fn: Callable[[nnx.Module, dict], object], mesh):
  """The jitted `(state, batch) -> fn(model, batch)` for one model structure on one mesh."""

  def forward(state, batch):
    model = nnx.merge(graphdef, state, copy=True)
    model.eval()
    return fn(model, batch)

  return jax.jit(forward, in_shardings=(mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)),
                 out_shardings=mesh_lib.replicated(mesh))


def in_batches(call: Callable[[dict], object], inputs: dict[str, np.ndarray], *, mesh,
               batch_size: int, desc: str | None = None):
  """`call` over every row of `inputs` (host arrays), outputs (a pytree) concatenated in order.

  With `desc`, process 0 shows a progress bar over the batches under that name.
  """
  batch_size = -(-batch_size // mesh.size) * mesh.size
  num_rows = len(next(iter(inputs.values())))
  outputs = []
  for rows, padded in progress(padded_batches(num_rows, batch_size), desc=desc, unit="batch",
                               total=-(-num_rows // batch_size),
                               disable=desc is None or jax.process_index() != 0):
    local = mesh_lib.local_rows(padded, mesh)
    out = call(mesh_lib.shard_batch(mesh, {k: v[local] for k, v in inputs.items()}))
    outputs.append(jax.tree.map(lambda x, n=len(rows): np.asarray(x)[:n], out))
  return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)


def padded_batches(num_rows: int, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """`(rows, padded)` per batch of `batch_size`: its row indices, and them padded with copies
  of its first row to `batch_size`, so that every call has one shape (one compilation)."""
  for lo in range(0, num_rows, batch_size):
    rows = np.arange(lo, min(lo + batch_size, num_rows))
    yield rows, np.concatenate([rows, np.full(batch_size - len(rows), rows[0])])


def apply_in_batches(model: nnx.Module, fn: Callable[[nnx.Module, dict], object],
                     inputs: dict[str, np.ndarray], *, mesh=None, batch_size: int = 64,
                     desc: str | None = None):
  """`fn(model, batch)` over all rows of `inputs` (eval mode), concatenated in row order."""
  mesh = mesh or mesh_lib.make_mesh()
  return in_batches(sharded_apply(model, fn, mesh), inputs, mesh=mesh, batch_size=batch_size,
                    desc=desc)
