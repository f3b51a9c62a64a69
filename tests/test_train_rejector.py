"""Rejector training: 8 devices vs 1, SIGKILL and resume, 2 processes, non-finite stop."""

import dataclasses
import importlib.util
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from l2d_jax.errors import ConfigError
from l2d_jax.train import checkpoint as ckpt_lib
from l2d_jax.train import loop as loop_lib
from l2d_jax.train import mesh as mesh_lib
from l2d_jax.train import rejector as R
from l2d_jax.train.optim import OptimConfig

import rejector_run

SCRIPT = pathlib.Path(rejector_run.__file__)


def _run(workdir, *args):
  return subprocess.run([sys.executable, str(SCRIPT), str(workdir), *map(str, args)],
                        capture_output=True, text=True, timeout=600)


def _params(workdir):
  with np.load(pathlib.Path(workdir) / "params.npz") as z:
    return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("full")
  result = _run(workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  return _params(workdir)


def test_sigkilled_run_resumes_to_identical_parameters(tmp_path, uninterrupted):
  killed = _run(tmp_path, "--kill-at", 17)
  assert killed.returncode == -9, killed.stderr[-3000:]
  assert not (tmp_path / "params.npz").exists()
  assert ckpt_lib.Checkpointer(tmp_path / "checkpoints").latest_step() in (8, 16)
  resumed = _run(tmp_path)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  got = _params(tmp_path)
  assert got.keys() == uninterrupted.keys()
  for name, want in uninterrupted.items():
    np.testing.assert_array_equal(got[name], want, err_msg=name)  # bitwise


def test_two_processes_over_loopback_match_one_process(tmp_path, uninterrupted):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = [subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path), "--num-processes", "2",
                             "--process-id", str(i), "--port", str(port), "--devices", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  for proc in procs:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
  got = _params(tmp_path)
  for name, want in uninterrupted.items():
    np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6, err_msg=name)
  # An ensemble of the trained rejector (replicated over both processes) and a fresh one
  # routes by its members' mean logits, run whole or as its head on its features.
  with np.load(tmp_path / "ensemble.npz") as logits:
    np.testing.assert_allclose(logits["ensemble"], logits["members_mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits["head"], logits["members_mean"], rtol=1e-5, atol=1e-6)


def _train(tmp_path, num_devices, data, steps=6, **kwargs):
  model = rejector_run.tiny_rejector(seed=1)
  settings = R.RejectorSettings(steps=steps, batch_size=16, optim=OptimConfig(learning_rate=3e-3),
                                eval_every=3, checkpoint_every=3, progress=False)
  spec = R.CostSpec(kwargs.get("loss", "1-f1"), (1.0, 1.0, 1.0), (0.0, 0.05, 0.1))
  return R.train_rejector(model, data, spec, settings, workdir=tmp_path,
                          mesh=mesh_lib.make_mesh(num_devices))


def test_eight_devices_match_one_device(tmp_path):
  data = rejector_run.toy_data()
  one, _ = _train(tmp_path / "one", 1, data)
  eight, last = _train(tmp_path / "eight", 8, data)
  for a, b in zip(*(jax_leaves(t.state["params"]) for t in (one, eight))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert {"deferral_loss", "oracle_loss", "f1", "share_0"} <= last.keys()
  assert (tmp_path / "eight" / "metrics.jsonl").exists()
  if importlib.util.find_spec("tensorboardX"):  # the optional extra l2d-jax[tensorboard]
    assert list((tmp_path / "eight" / "tensorboard").iterdir())


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  data = rejector_run.toy_data()
  nll = data.scores["span_nll"].copy()
  nll[:, 1] = np.nan  # every batch after the first checkpoint sees NaN costs
  poisoned = R.RejectorData(data.inputs, {**data.scores, "span_nll": nll}, data.example_ids)
  first = _train(tmp_path, 8, data, steps=3, loss="span_nll")[0]
  with pytest.raises(loop_lib.NonFiniteLossError, match="non-finite loss .* step 4"):
    _train(tmp_path, 8, poisoned, steps=6, loss="span_nll")
  checkpointer = ckpt_lib.Checkpointer(tmp_path / "checkpoints")
  assert checkpointer.all_steps() == [3]
  restored, _ = checkpointer.restore(3, ckpt_lib.abstract_like(first.state))
  for a, b in zip(jax_leaves(restored["params"]), jax_leaves(first.state["params"])):
    np.testing.assert_array_equal(a, b)


def test_resuming_under_other_costs_or_settings_is_refused(tmp_path):
  data = rejector_run.toy_data()
  _train(tmp_path, 1, data, steps=3)
  model = rejector_run.tiny_rejector(seed=1)
  settings = R.RejectorSettings(steps=6, batch_size=16, optim=OptimConfig(learning_rate=3e-3),
                                eval_every=3, checkpoint_every=3, progress=False)
  spec = R.CostSpec("1-f1", (1.0, 1.0, 1.0), (0.0, 0.05, 0.1))
  train = lambda spec, settings, meta=None: R.train_rejector(
      model, data, spec, settings, workdir=tmp_path, mesh=mesh_lib.make_mesh(1), meta=meta)
  with pytest.raises(ConfigError, match=r"checkpoints/3 was trained under other settings "
                     r"\(costs.beta_J \[0.0, 0.05, 0.1\] there, \[0.0, 0.1, 0.2\] now\)"):
    train(R.CostSpec("1-f1", (1.0, 1.0, 1.0), (0.0, 0.1, 0.2)), settings)
  with pytest.raises(ConfigError, match=r"settings.seed 0 there, 7 now"):
    train(spec, dataclasses.replace(settings, seed=7))
  assert ckpt_lib.Checkpointer(tmp_path / "checkpoints").all_steps() == [3]
  train(spec, settings, meta={"inputs": "text"})  # entries the checkpoint lacks: not compared
  with pytest.raises(ConfigError, match=r"checkpoints/6 .*\(inputs 'text' there, 'agents' now\)"):
    train(spec, settings, meta={"inputs": "agents"})


def jax_leaves(tree):
  import jax  # pylint: disable=import-outside-toplevel
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_allocation_metrics_exact_values():
  """Three questions, two agents, 1 - F1 costs with beta (0.1, 0.5): every metric by hand."""
  f1_ExJ = np.array([[1.0, 0.5], [0.0, 1.0], [0.5, 0.5]], np.float32)
  em_ExJ = (f1_ExJ == 1.0).astype(np.float32)
  data = R.RejectorData({}, {"em": em_ExJ, "f1": f1_ExJ, "span_nll": np.zeros_like(f1_ExJ)},
                        ["a", "b", "c"])
  spec = R.CostSpec("1-f1", (1.0, 1.0), (0.1, 0.5))
  logits_ExJ = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32)  # agents 0, 1, 1
  # Costs: [0.1, 1.0], [1.1, 0.5], [0.6, 1.0]; chosen 0.1, 0.5, 1.0; cheapest 0.1, 0.5, 0.6.
  metrics = R.allocation_metrics(logits_ExJ, data, spec)
  np.testing.assert_allclose(
      [metrics[k] for k in ("deferral_loss", "oracle_loss", "em", "f1", "beta_fee",
                            "share_0", "share_1")],
      [1.6 / 3, 1.2 / 3, 2 / 3, 2.5 / 3, 1.1 / 3, 1 / 3, 2 / 3], rtol=1e-6)


def test_head_learning_rate_trains_the_head_apart_from_the_text_encoder(tmp_path):
  """First AdamW step moves each parameter by about its learning rate (|m / sqrt(v)| = 1):
  the text encoder's by 1e-5, the head's by 1e-2."""
  import jax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  model = rejector_run.tiny_rejector(seed=1)
  groups = model.learning_rate_groups(nnx.split(model, nnx.Param, ...)[1])
  before = nnx.split(model, nnx.Param, ...)[1]
  before = jax.tree.map(np.array, before)
  optim = OptimConfig(learning_rate=1e-5, warmup_fraction=0.0, weight_decay=0.0, clip_norm=0.0,
                      schedule="constant")
  settings = R.RejectorSettings(steps=1, batch_size=16, optim=optim, head_learning_rate=1e-2,
                                eval_every=0, checkpoint_every=0, progress=False)
  spec = R.CostSpec("1-f1", (1.0, 1.0, 1.0), (0.0, 0.05, 0.1))
  trainable, _ = R.train_rejector(model, rejector_run.toy_data(), spec, settings,
                                  workdir=tmp_path, mesh=mesh_lib.make_mesh(1))
  moved = {"encoder": [], "head": []}
  for group, old, new in zip(jax.tree.leaves(groups), jax.tree.leaves(before),
                             jax_leaves(trainable.state["params"])):
    moved[group].append(np.abs(new - old).max())
  assert len(moved["head"]) == 2 and len(moved["encoder"]) > 2  # classifier kernel and bias
  assert max(moved["encoder"]) == pytest.approx(1e-5, rel=1e-2)
  assert min(moved["head"]) == pytest.approx(1e-2, rel=1e-2)
