"""Orbax checkpoints of a training state: async, atomic, last K plus the best.

A checkpoint holds two items: `state` (a pytree of arrays: parameters,
optimizer state, step, RNG) and `meta` (JSON: where the data stream stands, the
metrics of that step, the config). Orbax writes each step to a temporary
directory and renames it when complete, so a run killed mid-save leaves the
previous checkpoint intact and the partial one is ignored on restore.

Restoring takes an abstract target whose leaves carry the *current* shardings,
so a state saved on 8 devices restores on 1 or 2.
"""

import logging
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx
from orbax.checkpoint import checkpoint_managers as cm

from l2d_jax.errors import ConfigError


class Checkpointer:
  """Saves every `every` steps, keeps the latest `keep` and the `keep_best` best by `best_metric`."""

  def __init__(self, directory: str | pathlib.Path, *, keep: int = 3, keep_best: int = 1,
               best_metric: str | None = None, best_mode: str = "min",
               async_save: bool = True):
    policies = [cm.LatestN(n=keep)]
    if best_metric is not None and keep_best:
      policies.append(cm.BestN(
          get_metric_fn=lambda metrics: metrics[best_metric],
          reverse=best_mode == "min", n=keep_best, keep_checkpoints_without_metrics=False))
    self.directory = pathlib.Path(directory).absolute()
    self._manager = ocp.CheckpointManager(
        self.directory,
        item_names=("state", "meta"),
        options=ocp.CheckpointManagerOptions(
            preservation_policy=cm.AnyPreservationPolicy(policies),
            best_fn=(lambda metrics: metrics[best_metric]) if best_metric else None,
            best_mode=best_mode,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
            create=True))

  def save(self, step: int, state: Any, meta: dict, metrics: dict[str, float] | None = None,
           force: bool = False) -> bool:
    """Starts saving `state` and `meta` at `step` (asynchronously); returns whether it saved."""
    return self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        metrics=metrics, force=force)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    return self._manager.best_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """(state, meta) of `step`, with arrays laid out as the leaves of `abstract_state` say.

    `abstract_state` is a pytree of `jax.ShapeDtypeStruct(shape, dtype, sharding=...)`,
    e.g. `abstract_like(state)` of a freshly initialised state on the current mesh.
    A checkpoint of another model (the workdir of another config) is a ConfigError.
    """
    state_dir = self.directory / str(step) / "state"
    _check_fits(state_dir, ocp.PyTreeCheckpointer().metadata(state_dir).item_metadata,
                abstract_state)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                      meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def restore_params(directory: str | pathlib.Path, params_like: Any) -> Any:
  """The `params` of the latest checkpoint in `directory`, another run's, shaped as `params_like`.

  Reads only the parameters (not the optimizer state, which belongs to the
  other run's schedule) of its newest finished step, onto the first local
  device, without touching the directory. Used to start a fine-tuning from
  another run's fine-tuned model. A directory without a finished checkpoint,
  one whose training stopped before its last step (that run is still going,
  or was killed: its model is not the one named), or parameters of another
  shape or structure, is an error naming the directory.
  """
  directory = pathlib.Path(directory).absolute()
  step = latest_finished_step(directory)
  if step is None:
    raise FileNotFoundError(f"{directory}: no finished checkpoint to take parameters from")
  meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(directory / str(step) / "meta")
  if meta.get("step", step) < meta.get("total_steps", 0):
    raise ConfigError(f"{directory}: its training is unfinished (step {meta['step']} of "
                      f"{meta['total_steps']}); finish that run, then start this one")
  state_dir = directory / str(step) / "state"
  checkpointer = ocp.PyTreeCheckpointer()
  _check_fits(state_dir, checkpointer.metadata(state_dir).item_metadata.get("params", {}),
              params_like)
  logging.info("taking parameters from %s", state_dir.parent)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          params_like)
  return checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
      item={"params": abstract}, restore_args=ocp.checkpoint_utils.construct_restore_args(
          {"params": abstract}), partial_restore=True))["params"]


def restore_params_into(model: nnx.Module, directory: str | pathlib.Path) -> None:
  """Overwrites `model`'s parameters with those of the latest checkpoint in `directory`."""
  _, params, _ = nnx.split(model, nnx.Param, ...)
  nnx.update(model, restore_params(directory, params))


def latest_finished_step(directory: str | pathlib.Path) -> int | None:
  """The newest step Orbax finished writing in `directory` (None: none), without changing it."""
  directory = pathlib.Path(directory).absolute()
  if not directory.is_dir():
    return None
  manager = ocp.CheckpointManager(directory,
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  try:
    return manager.latest_step()
  finally:
    manager.close()


def _check_fits(state_dir: pathlib.Path, saved_tree: Any, wanted_tree: Any) -> None:
  """Refuses saved arrays whose names or shapes differ from the model's (a ConfigError).

  Orbax would pad or cut a mismatched array without a word, or fail deep in
  its restore with a traceback.
  """
  saved, wanted = _shapes_by_name(saved_tree), _shapes_by_name(wanted_tree)
  if saved != wanted:
    diff = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
    what = ("its optimizer state does not fit this optimizer (trained with other optimizer "
            "settings, e.g. train.head_learning_rate?)"
            if all(k.startswith("opt_state/") for k in diff) else
            "its parameters do not fit this model (a checkpoint of another config?)")
    raise ConfigError(f"{state_dir.parent}: {what}; first of {len(diff)} differences: {diff[0]} "
                      f"saved {saved.get(diff[0])}, model {wanted.get(diff[0])}")


def _shapes_by_name(tree: Any) -> dict[str, tuple[int, ...]]:
  """Leaf shapes keyed by "a/b/c" paths, alike for dicts and NNX states (`.value` vs ['value'])."""
  def name(key) -> str:
    return str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))
  return {"/".join(map(name, path)): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def abstract_like(tree: Any) -> Any:
  """Shape, dtype and sharding of each array in `tree`: the restore target for `Checkpointer`."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      tree)
