"""The device mesh and the only place that builds shardings.

Training is data parallel: a 1-D mesh over every device of every process, with
the batch (and the matching rows of the agent store) sharded on the `data` axis
and parameters and optimizer state replicated. Host data enters through
`jax.make_array_from_process_local_data`, so the same code runs on one CPU, on
8 simulated devices, on a multi-GPU box and on a multi-host TPU slice.
"""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D `data` mesh over the first `num_devices` devices (all of them by default).

  Axis type Auto: the jitted steps state their in/out shardings and XLA's
  partitioner inserts the gradient all-reduce.
  """
  devices = jax.devices()
  if num_devices is not None:
    if num_devices > len(devices):
      raise ValueError(f"asked for {num_devices} devices, only {len(devices)} are visible")
    devices = devices[:num_devices]
  return jax.make_mesh((len(devices),), (DATA,), axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimizer state, scalars)."""
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`; other axes whole."""
  return NamedSharding(mesh, P(DATA))


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """This process's share of a global batch; the batch must split evenly over devices."""
  if global_batch_size % mesh.size:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                     f"{mesh.size} devices of the mesh")
  return global_batch_size // jax.process_count()


def shard_batch(mesh: Mesh, local_tree):
  """Host arrays holding this process's rows -> global arrays sharded on `data`.

  Each process passes its own consecutive slice of the global batch; the global
  leading dimension is the sum over processes.
  """
  sharding = data_sharded(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_tree)


def replicate(mesh: Mesh, tree):
  """Puts a pytree that is identical on every process onto every device of `mesh`."""
  sharding = replicated(mesh)

  def put(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, tree)


def process_rows(num_rows: int) -> slice:
  """The contiguous rows of a `num_rows` table this process reads (its shard of the data).

  Rows are split as evenly as possible; with one process this is everything.
  """
  count, index = jax.process_count(), jax.process_index()
  bounds = np.linspace(0, num_rows, count + 1).astype(int)
  return slice(int(bounds[index]), int(bounds[index + 1]))


def local_rows(rows_B: np.ndarray, mesh: Mesh) -> np.ndarray:
  """This process's contiguous share of a global batch's row indices."""
  per_process = local_batch_size(len(rows_B), mesh)
  start = jax.process_index() * per_process
  return rows_B[start:start + per_process]
