"""Checkpointer: keeps the last K and the best, restores onto other device counts."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from l2d_jax.errors import ConfigError
from l2d_jax.models.config import EncoderConfig
from l2d_jax.models.heads import SpanModel
from l2d_jax.train import checkpoint as ckpt
from l2d_jax.train import mesh as mesh_lib
from l2d_jax.train.state import Trainable


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


def test_a_checkpoint_of_another_model_is_one_config_error(tmp_path):
  """A workdir trained with other settings (another rejector.inputs, say) is named, not restored."""
  mesh = mesh_lib.make_mesh(1)
  checkpointer = ckpt.Checkpointer(tmp_path)
  checkpointer.save(1, _state(mesh), {})
  checkpointer.close()
  other = _state(mesh)
  other["params"]["w"] = mesh_lib.replicate(mesh, np.zeros((5, 4), np.float32))
  with pytest.raises(ConfigError, match=r"/1: its parameters do not fit this model.*params/w "
                                        r"saved \(3, 4\), model \(5, 4\)"):
    ckpt.Checkpointer(tmp_path).restore(1, ckpt.abstract_like(other))
  # Same parameters, another optimizer (e.g. train.head_learning_rate set since): said so.
  other_optimizer = dict(_state(mesh), opt_state={"count": mesh_lib.replicate(mesh, np.int32(0))})
  with pytest.raises(ConfigError, match=r"/1: its optimizer state does not fit this optimizer "
                                        r".*train.head_learning_rate.*opt_state/count saved None"):
    ckpt.Checkpointer(tmp_path).restore(1, ckpt.abstract_like(other_optimizer))


def test_unfinished_save_is_ignored(tmp_path):
  mesh = mesh_lib.make_mesh(1)
  checkpointer = ckpt.Checkpointer(tmp_path)
  checkpointer.save(1, _state(mesh), {})
  checkpointer.close()
  # what a save killed mid-write leaves: a temporary step directory
  (tmp_path / "2.orbax-checkpoint-tmp-123").mkdir()
  assert ckpt.Checkpointer(tmp_path).latest_step() == 1


def _span_model(hidden: int, seed: int):
  config = EncoderConfig(family="bert", vocab_size=50, hidden_size=hidden, num_layers=1,
                         num_heads=2, intermediate_size=32, max_position_embeddings=32)
  return SpanModel(config, rngs=nnx.Rngs(seed))


def test_restore_params_takes_another_runs_parameters_only(tmp_path):
  mesh = mesh_lib.make_mesh()
  trained = Trainable(_span_model(16, seed=1), optax.adamw(1e-3), mesh, seed=0)
  checkpointer = ckpt.Checkpointer(tmp_path / "run")
  for step in (1, 2):
    state = dict(trained.state, params=jax.tree.map(lambda x, s=step: x + s, trained.state["params"]))
    checkpointer.save(step, state, {"step": step})
  checkpointer.close()
  fresh = _span_model(16, seed=2)
  _, params_like, _ = nnx.split(fresh, nnx.Param, ...)
  restored = ckpt.restore_params(tmp_path / "run", params_like)
  expected = jax.tree.map(lambda x: x + 2, trained.state["params"])  # the latest step
  for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["1", "2"]  # untouched
  _, other_like, _ = nnx.split(_span_model(8, seed=2), nnx.Param, ...)
  with pytest.raises(ValueError, match=str(tmp_path / "run" / "2")):
    ckpt.restore_params(tmp_path / "run", other_like)
  with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
    ckpt.restore_params(tmp_path / "missing", params_like)


def test_restore_params_refuses_a_training_that_has_not_finished(tmp_path):
  """Fine-tuning checkpoints along the way: another run's expert mid-training (still
  going, or killed) is not the model `init_from` names."""
  mesh = mesh_lib.make_mesh()
  trained = Trainable(_span_model(16, seed=1), optax.adamw(1e-3), mesh, seed=0)
  _, params_like, _ = nnx.split(_span_model(16, seed=2), nnx.Param, ...)
  checkpointer = ckpt.Checkpointer(tmp_path / "run")
  checkpointer.save(2, trained.state, {"step": 2, "total_steps": 5})
  checkpointer.close()
  with pytest.raises(ConfigError, match=r"/run: its training is unfinished \(step 2 of 5\)"):
    ckpt.restore_params(tmp_path / "run", params_like)
  checkpointer = ckpt.Checkpointer(tmp_path / "run")
  checkpointer.save(5, trained.state, {"step": 5, "total_steps": 5})
  checkpointer.close()
  ckpt.restore_params(tmp_path / "run", params_like)  # finished: taken
