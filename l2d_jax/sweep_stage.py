"""`l2d-jax sweep`: a grid of rejector configurations trained at once on frozen features.

Uses the experiment's agent store (computing it first if needed) and the
rejector's feature sources: the trained rejector of `l2d-jax run` when its
checkpoint is in the workdir (of an ensemble, `train.ensemble`, its first
member, in `rejector/`: the sweep's heads are one rejector's), else the
configured sources as they are (e.g. pretrained all-MiniLM-L6-v2, the agent
features standardised). Heads are
trained on rejector_train minus its validation articles; each configuration is
scored on validation (for choosing) and on test. Rows go to `results.csv` /
`results.md`; a rerun trains only the configurations missing from them.
"""

import pathlib

import numpy as np

from l2d_jax import config as config_lib
from l2d_jax import pipeline
from l2d_jax.agents.pool import experiment_pool
from l2d_jax.data.sources import load_splits
from l2d_jax.errors import ConfigError
from l2d_jax.train import checkpoint as ckpt_lib
from l2d_jax.train import mesh as mesh_lib
from l2d_jax.train import sweep as sweep_lib
from l2d_jax.train.optim import make_optimizer
from l2d_jax.train.state import Trainable

AXIS_TYPES = {"beta_scale": float, "alpha": float, "learning_rate": float, "u": float, "seed": int}


def parse_grid(specs: list[str]) -> dict[str, list]:
  """["beta_scale=0,0.1", "u=1,0"] -> {"beta_scale": [0.0, 0.1], "u": [1.0, 0.0]}."""
  axes = {}
  for spec in specs:
    name, _, values = spec.partition("=")
    if name not in AXIS_TYPES or not values:
      raise ConfigError(f"--grid {spec!r}: expected AXIS=V1,V2,... with AXIS one of "
                       f"{sorted(AXIS_TYPES)}")
    axes[name] = [AXIS_TYPES[name](v) for v in values.split(",")]
  return axes


def trained_or_backbone(config: config_lib.ExperimentConfig, model, workdir: pathlib.Path, mesh):
  """`model` with the weights of the finished run in `workdir` if there is one, else as it is."""
  t = config.train
  checkpoints = workdir / "rejector" / "checkpoints"
  if checkpoints.exists():
    checkpointer = ckpt_lib.Checkpointer(checkpoints)
    step = checkpointer.best_step() or checkpointer.latest_step()
    if step is not None:
      trainable = Trainable(model, make_optimizer(t.optim, t.steps), mesh, t.seed)
      trainable.state, _ = checkpointer.restore(step, ckpt_lib.abstract_like(trainable.state))
      checkpointer.close()
      return trainable.model()
  return model


def run_sweep(config: config_lib.ExperimentConfig, grid_specs: list[str], *, steps: int = 300,
              out_dir: str | None = None) -> pathlib.Path:
  pipeline.check_agents(config, "rejector")
  workdir = pathlib.Path(config.workdir)
  out = pathlib.Path(out_dir) if out_dir else workdir / "sweep"
  points = sweep_lib.pending(sweep_lib.grid(**parse_grid(grid_specs)), out)
  if not points:
    print(f"every configuration of the grid is already in {out / 'results.csv'}")
    return out
  mesh = mesh_lib.make_mesh(config.train.num_devices or None)
  splits = load_splits(config.data, workdir)
  pool = experiment_pool(config, splits, mesh)
  model, data = pipeline.build_rejector(config, pool, pipeline.rejector_tokenizer(config, splits))
  model = trained_or_backbone(config, model, workdir, mesh)
  if config.train.ensemble > 1:
    print(f"train.ensemble={config.train.ensemble}: the sweep reads the features of its first "
          f"member ({workdir / 'rejector'}), one rejector's")
  pooled = sweep_lib.pooled_features(model, data.inputs, mesh=mesh, desc="pooled features")
  train_rows, val_rows = pipeline.validation_rows(pool)
  test_rows = np.arange(pool.num_rejector_train, len(pool.examples))
  fees_J = pipeline.route_fees(pool, model)  # a feature agent, paid anyway, adds nothing
  kernels, biases = sweep_lib.train_heads(
      pooled[train_rows], data.select(train_rows).scores, fees_J, config.costs.loss, points,
      sweep_lib.HeadTraining(steps=steps, batch_size=config.train.batch_size))
  rows = []
  for part, index in (("val", val_rows), ("test", test_rows)):
    scored = sweep_lib.evaluate_heads(pooled[index], data.select(index), fees_J,
                                      config.costs.loss, points, kernels, biases)
    for k, row in enumerate(scored):
      if part == "val":
        rows.append({key: row[key] for key in ("key", *AXIS_TYPES)})
      rows[k].update({f"{part}_{key}": value for key, value in row.items()
                      if key not in ("key", *AXIS_TYPES)})
  sweep_lib.write_results(rows, out)
  return out
