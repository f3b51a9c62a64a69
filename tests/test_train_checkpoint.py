"""Checkpointer: keeps the last K and the best, restores onto other device counts."""

import jax
import numpy as np
import pytest

from l2d_jax.train import checkpoint as ckpt
from l2d_jax.train import mesh as mesh_lib


def _state(mesh):
  return {"params": {"w": mesh_lib.replicate(mesh, np.arange(12.0, dtype=np.float32).reshape(3, 4))},
          "step": mesh_lib.replicate(mesh, np.int32(7)),
          "rows": mesh_lib.shard_batch(mesh, np.arange(16, dtype=np.float32))}


def test_keeps_latest_and_best(tmp_path):
  mesh = mesh_lib.make_mesh()
  checkpointer = ckpt.Checkpointer(tmp_path, keep=2, best_metric="loss", best_mode="min")
  for step, loss in [(1, 5.0), (2, 0.5), (3, 4.0), (4, 3.0), (5, 2.0)]:
    checkpointer.save(step, _state(mesh), {"step": step}, metrics={"loss": loss})
  checkpointer.wait()
  assert checkpointer.all_steps() == [2, 4, 5]
  assert (checkpointer.latest_step(), checkpointer.best_step()) == (5, 2)
  checkpointer.close()


@pytest.mark.parametrize("num_devices", [1, 2])
def test_saved_on_8_devices_restores_on_fewer(tmp_path, num_devices):
  assert jax.device_count() == 8
  saved = _state(mesh_lib.make_mesh(8))
  checkpointer = ckpt.Checkpointer(tmp_path)
  checkpointer.save(3, saved, {"position": 42})
  checkpointer.close()

  small = mesh_lib.make_mesh(num_devices)
  target = ckpt.abstract_like(_state(small))
  restored, meta = ckpt.Checkpointer(tmp_path).restore(3, target)
  assert meta == {"position": 42}
  for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(saved)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert len(got.sharding.device_set) == num_devices
  assert restored["rows"].sharding.spec == mesh_lib.data_sharded(small).spec


def test_unfinished_save_is_ignored(tmp_path):
  mesh = mesh_lib.make_mesh(1)
  checkpointer = ckpt.Checkpointer(tmp_path)
  checkpointer.save(1, _state(mesh), {})
  checkpointer.close()
  # what a save killed mid-write leaves: a temporary step directory
  (tmp_path / "2.orbax-checkpoint-tmp-123").mkdir()
  assert ckpt.Checkpointer(tmp_path).latest_step() == 1
