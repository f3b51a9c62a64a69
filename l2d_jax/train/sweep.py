"""Hyperparameter sweeps at the speed JAX allows: a frozen encoder and vmapped heads.

In frozen-encoder mode the rejector's feature sources (the encoder and pooler,
the agent-feature layer) run once over every question, giving the concatenated
features the head reads; only the (J+1)-way linear head is trained. K configurations (beta
scale, alpha, learning rate, u, seed) then train together in one compiled
`lax.scan` over steps: all K heads see the same mini-batches, so a step is one
wide matmul over the K heads (the surrogate is vmapped over configurations).
Each configuration keeps its own head, optimizer state and result; its seed
draws its head's initialization.
"""

import csv
import dataclasses
import functools
import itertools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2d_jax.defer import costs as costs_lib
from l2d_jax.defer import surrogate
from l2d_jax.errors import ConfigError
from l2d_jax.rejector.ensemble import AnyRejector
from l2d_jax.rejector.model import host_head
from l2d_jax.train import inference
from l2d_jax.train.rejector import CostSpec, RejectorData, allocation_metrics


@dataclasses.dataclass(frozen=True)
class SweepPoint:
  """One configuration: costs `alpha * loss + beta_scale * fee`, learning rate, u, seed."""
  beta_scale: float = 1.0
  alpha: float = 1.0
  learning_rate: float = 1e-2
  u: float = 1.0
  seed: int = 0

  @property
  def key(self) -> str:
    """A stable name of the configuration (results rows are keyed by it)."""
    return (f"beta={self.beta_scale:g},alpha={self.alpha:g},lr={self.learning_rate:g},"
            f"u={self.u:g},seed={self.seed}")


def grid(**axes) -> list[SweepPoint]:
  """The cartesian product of the given axes (names of SweepPoint fields -> values)."""
  names = list(axes)
  unknown = set(names) - {f.name for f in dataclasses.fields(SweepPoint)}
  if unknown:
    raise ConfigError(f"unknown sweep axes {sorted(unknown)}; "
                     f"expected {[f.name for f in dataclasses.fields(SweepPoint)]}")
  return [SweepPoint(**dict(zip(names, values)))
          for values in itertools.product(*(axes[n] for n in names))]


def pooled_features(model: AnyRejector, inputs: dict[str, np.ndarray], *, mesh=None,
                    batch_size: int = 64, desc: str | None = None) -> np.ndarray:
  """The head's input `[E, D]` for every question: the sources' vectors side by side (eval mode).

  `desc` names a progress bar over the batches (none without it).
  """
  return inference.apply_in_batches(model, _pooled, inputs, mesh=mesh, batch_size=batch_size,
                                    desc=desc)


def classifier_logits(model: AnyRejector, pooled_ExH: np.ndarray) -> np.ndarray:
  """The model's own logits `[E, J]` from its pooled features: its head alone, in fp32 on the host.

  Equal to running the whole model on the inputs the features came from (in
  eval mode the head has no dropout). The head's parameters are replicated, so
  this process's copy is read, also when other processes hold the rest.
  """
  kernel_DxJ, bias_J = host_head(model.classifier)
  return np.asarray(pooled_ExH, np.float32) @ kernel_DxJ + bias_J


def _pooled(model: AnyRejector, batch: dict) -> jax.Array:
  """The head's input on one batch (module level: compiled once per model shape)."""
  return model.features(batch)


@dataclasses.dataclass(frozen=True)
class HeadTraining:
  steps: int = 300
  batch_size: int = 256
  weight_decay: float = 0.0
  data_seed: int = 0  # the mini-batch order, shared by every configuration


def train_heads(pooled_ExH: np.ndarray, scores: dict[str, np.ndarray], fees_J: np.ndarray,
                loss: str, points: list[SweepPoint], settings: HeadTraining
                ) -> tuple[np.ndarray, np.ndarray]:
  """Trains one linear head per point, all at once; returns kernels `[K, H, J]`, biases `[K, J]`."""
  loss_ExJ = costs_lib.select_loss(loss, em_ExJ=scores["em"], f1_ExJ=scores["f1"],
                                   span_nll_ExJ=scores["span_nll"])
  hyper_K = {name: jnp.asarray([getattr(p, name) for p in points], jnp.float32)
             for name in ("beta_scale", "alpha", "learning_rate", "u")}
  seeds_K = jnp.asarray([p.seed for p in points], jnp.uint32)
  rows_TxB = batch_rows(len(pooled_ExH), settings.steps,
                        min(settings.batch_size, len(pooled_ExH)), settings.data_seed)
  kernels_KxHxJ, biases_KxJ = _train_heads(
      jnp.asarray(pooled_ExH, jnp.float32), jnp.asarray(loss_ExJ, jnp.float32),
      jnp.asarray(fees_J, jnp.float32), hyper_K, seeds_K, jnp.asarray(rows_TxB),
      weight_decay=settings.weight_decay)
  return np.asarray(kernels_KxHxJ), np.asarray(biases_KxJ)


def batch_rows(num_examples: int, steps: int, batch_size: int, seed: int) -> np.ndarray:
  """The rows of each step's mini-batch `[T, B]`: a fresh permutation of the examples each epoch.

  Drawn on the host: NumPy shuffles in microseconds what a sort-based
  `jax.random.permutation` takes tens of milliseconds for on a CPU, which
  every call (and every configuration of a sequential sweep) would pay again.
  (Since this moved to the host, a `data_seed` gives another order than it
  did inside the compiled program before.)
  """
  rng = np.random.default_rng(seed)
  epochs = -(-steps * batch_size // num_examples)
  order = np.concatenate([np.zeros(0, np.int64)]
                         + [rng.permutation(num_examples) for _ in range(epochs)])
  return order[:steps * batch_size].reshape(steps, batch_size).astype(np.int32)


@functools.partial(jax.jit, static_argnames=("weight_decay",))
def _train_heads(pooled_ExH, loss_ExJ, fees_J, hyper_K, seeds_K, rows_TxB, *,
                 weight_decay: float):
  """The compiled sweep: one `lax.scan` over steps that updates all K heads at once.

  Every configuration sees the same mini-batches (`rows_TxB`), so a step
  gathers its rows once and the K heads are
  one wide matmul `[B, H] @ [H, K*J]` forward and one backward, instead of K
  narrow ones: on a CPU that is what makes a sweep cheaper than K runs. The
  seed of a configuration draws its head's initialization. AdamW with a
  per-configuration learning rate, the same update as `optax.adamw`.
  Compiled once per shape and settings, so sweeps of one size (and the
  one-configuration calls of a sequential loop) reuse the program.
  """
  hidden = pooled_ExH.shape[1]
  num_agents = loss_ExJ.shape[1]
  params = {
      "kernel": jax.vmap(lambda s: 0.02 * jax.random.normal(jax.random.key(s),
                                                            (hidden, num_agents)))(seeds_K),
      "bias": jnp.zeros((len(seeds_K), num_agents))}
  tx = optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(weight_decay))
  learning_rate_K = hyper_K["learning_rate"]
  comp_sum_K = jax.vmap(surrogate.mean_comp_sum_loss)

  def objective(params, rows_B):
    logits_KxBxJ = (jnp.einsum("bh,khj->kbj", pooled_ExH[rows_B], params["kernel"])
                    + params["bias"][:, None])
    costs_KxBxJ = (hyper_K["alpha"][:, None, None] * loss_ExJ[rows_B]
                   + hyper_K["beta_scale"][:, None, None] * fees_J)
    # Heads are independent, so the gradient of the sum is each head's own.
    return jnp.sum(comp_sum_K(logits_KxBxJ, costs_KxBxJ, hyper_K["u"]))

  def step(carry, rows_B):
    params, opt_state = carry
    grads = jax.grad(objective)(params, rows_B)
    updates, opt_state = tx.update(grads, opt_state, params)
    updates = jax.tree.map(
        lambda u: -learning_rate_K.reshape((-1,) + (1,) * (u.ndim - 1)) * u, updates)
    return (optax.apply_updates(params, updates), opt_state), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), rows_TxB)
  return params["kernel"], params["bias"]


def evaluate_heads(pooled_ExH: np.ndarray, data: RejectorData, fees_J: np.ndarray, loss: str,
                   points: list[SweepPoint], kernels: np.ndarray, biases: np.ndarray) -> list[dict]:
  """One results row per point: the allocation metrics of its head on `data`."""
  rows = []
  for point, kernel, bias in zip(points, kernels, biases):
    num_agents = kernel.shape[1]
    spec = CostSpec(loss, (point.alpha,) * num_agents,
                    tuple(float(point.beta_scale * f) for f in fees_J))
    logits_ExJ = pooled_ExH @ kernel + bias
    rows.append({"key": point.key, **dataclasses.asdict(point),
                 **allocation_metrics(logits_ExJ, data, spec)})
  return rows


def write_results(rows: list[dict], out_dir: str | pathlib.Path) -> None:
  """Appends rows to `results.csv` and rewrites `results.md` from the whole CSV."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  all_rows = read_results(out_dir) + rows
  if not all_rows:
    return
  columns = list(dict.fromkeys(k for row in all_rows for k in row))
  tmp = out_dir / ".results.csv.tmp"
  with open(tmp, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(all_rows)
  tmp.replace(out_dir / "results.csv")
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for row in all_rows:
    lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
  (out_dir / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_results(out_dir: str | pathlib.Path) -> list[dict]:
  """Rows already in `results.csv` (numbers parsed), or [] when there is none."""
  path = pathlib.Path(out_dir) / "results.csv"
  if not path.exists():
    return []
  with open(path, newline="", encoding="utf-8") as f:
    return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def pending(points: list[SweepPoint], out_dir: str | pathlib.Path) -> list[SweepPoint]:
  """The points whose results are not in `out_dir` yet (a rerun skips finished ones)."""
  done = {row["key"] for row in read_results(out_dir)}
  return [p for p in points if p.key not in done]


def _parse(value: str):
  for kind in (int, float):
    try:
      return kind(value)
    except ValueError:
      pass
  return value


def _fmt(value) -> str:
  return f"{value:.4f}" if isinstance(value, float) else str(value)
