"""The training state of an NNX model as a plain pytree, and the jitted data-parallel step.

NNX modules are split once into a static `graphdef`, their trainable `nnx.Param`
state and the rest (RNG streams, non-trainable variables). The jitted step
merges them back, so the compiled program is an ordinary function of arrays:
parameters and optimizer state replicated, the batch sharded on `data`, the old
state donated. Every RNG stream of the module (whatever it is named: a fresh
model's are `default`, an imported checkpoint's `dropout`) is reseeded from
`(seed, step)` inside the step, so each step draws new dropout masks and a
resumed run draws exactly the masks an uninterrupted one would.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from l2d_jax.train import mesh as mesh_lib

# loss_fn(model, batch) -> (scalar loss, dict of scalar metrics)
LossFn = Callable[[nnx.Module, dict], tuple[jax.Array, dict]]


class Trainable:
  """A module split for functional training: `graphdef`, `rest`, and `state` to train."""

  def __init__(self, model: nnx.Module, tx: optax.GradientTransformation, mesh: Mesh,
               seed: int):
    self.graphdef, params, self.rest = nnx.split(model, nnx.Param, ...)
    self.stream_tags = rng_stream_tags(model)
    self.tx = tx
    self.mesh = mesh
    self.seed = seed
    self.state = mesh_lib.replicate(mesh, {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "opt_state": tx.init(params),
    })
    self.rest = mesh_lib.replicate(mesh, self.rest)

  def model(self, params=None) -> nnx.Module:
    """The module with `params` (default: the current ones), in eval mode."""
    model = nnx.merge(self.graphdef, self.state["params"] if params is None else params,
                      self.rest)
    model.eval()
    return model

  def make_step(self, loss_fn: LossFn) -> Callable[[dict, dict], tuple[dict, dict]]:
    """`step(state, batch) -> (state, metrics)`, jitted over the mesh with the state donated.

    Metrics gain `loss`, `grad_norm` and `finite` (1 when loss
    and gradients are finite). A non-finite step leaves parameters unchanged, so the
    loop can stop with the last good state intact.
    """
    graphdef, rest, tx, seed = self.graphdef, self.rest, self.tx, self.seed
    tags = self.stream_tags

    def step(state, batch):
      def compute(params):
        model = nnx.merge(graphdef, params, rest, copy=True)  # fresh Variables in this trace
        model.train()
        nnx.reseed(model, **step_keys(tags, jax.random.fold_in(jax.random.key(seed),
                                                               state["step"])))
        return loss_fn(model, batch)

      (loss, metrics), grads = jax.value_and_grad(compute, has_aux=True)(state["params"])
      grad_norm = optax.tree.norm(grads)
      finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
      updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
      params = optax.apply_updates(state["params"], updates)
      keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
      new_state = {"step": state["step"] + 1,
                   "params": keep(params, state["params"]),
                   "opt_state": keep(opt_state, state["opt_state"])}
      return new_state, {**metrics, "loss": loss, "grad_norm": grad_norm,
                         "finite": finite.astype(jnp.float32)}

    replicated = mesh_lib.replicated(self.mesh)
    return jax.jit(step, in_shardings=(replicated, mesh_lib.data_sharded(self.mesh)),
                   out_shardings=(replicated, replicated), donate_argnums=0)


def rng_stream_tags(model: nnx.Module) -> tuple[str, ...]:
  """The names of the module's RNG streams (dropout's), sorted."""
  return tuple(sorted({node.key.tag for _, node in nnx.iter_graph(model)
                       if isinstance(node, nnx.RngStream)}))


def step_keys(tags: tuple[str, ...], step_key: jax.Array) -> dict[str, jax.Array]:
  """A key per stream for one step: `default` takes the step's key, any other its own fold.

  Reseeding only `default` left the streams of imported checkpoints (named
  `dropout`) at their initial key, so every step drew the same masks.
  """
  return {tag: step_key if tag == "default" else jax.random.fold_in(step_key, rank + 1)
          for rank, tag in enumerate(tags)}


def count_params(tree: Any) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))
