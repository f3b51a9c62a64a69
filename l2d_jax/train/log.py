"""Training metrics: JSONL, optional TensorBoard event files (tensorboardX), progress lines.

Metrics arrive as device scalars. Converting them to Python floats right away
would block the host on every step, so `MetricsLogger` keeps the latest step's
device values and writes them one call later (nanodo's async-metrics pattern):
the host queues step n+1 while step n's numbers come back.
Only process 0 writes files; every process may call it.
"""

import functools
import json
import logging
import pathlib
import time

import jax
import numpy as np

from l2d_jax.train import progress as progress_lib


@functools.cache
def _summary_writer_class():
  """tensorboardX's SummaryWriter, or None (said once) where the optional extra is not installed."""
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    logging.warning("TensorBoard event files are off (%s): metrics.jsonl has every metric; "
                    "pip install 'l2d-jax[tensorboard]' for event files too", e)
    return None
  return SummaryWriter


class MetricsLogger:
  """Writes `{step, split, **metrics}` rows to `metrics.jsonl` and TensorBoard under `workdir`."""

  def __init__(self, workdir: str | pathlib.Path, *, total_steps: int | None = None,
               initial_step: int = 0, desc: str = "train", tensorboard: bool = True,
               progress: bool = True):
    self.workdir = pathlib.Path(workdir)
    self._is_writer = jax.process_index() == 0
    self._pending: tuple[int, str, dict, int] | None = None
    self._tb = None
    self._jsonl = None
    if self._is_writer:
      self.workdir.mkdir(parents=True, exist_ok=True)
      self._jsonl = open(self.workdir / "metrics.jsonl", "a", encoding="utf-8")
      writer_class = _summary_writer_class() if tensorboard else None
      if writer_class is not None:
        self._tb = writer_class(str(self.workdir / "tensorboard"))
    self._bar = progress_lib.progress(total=total_steps, initial=initial_step, desc=desc,
                                      unit="step", disable=not (progress and self._is_writer))
    self._last_time = time.perf_counter()

  def step(self, step: int, metrics: dict, examples: int) -> None:
    """Records one train step's device metrics; writes the previous step's."""
    self._flush()
    self._pending = (step, "train", metrics, examples)
    self._bar.update(1)

  def write(self, step: int, split: str, metrics: dict) -> dict:
    """Writes metrics now (evaluation, end of run); returns them as floats."""
    self._flush()
    return self._emit(step, split, metrics)

  def _flush(self) -> None:
    if self._pending is not None:
      step, split, metrics, examples = self._pending
      self._pending = None
      values = {k: float(np.asarray(v)) for k, v in metrics.items()}  # waits for the step
      now = time.perf_counter()
      values["examples_per_sec"] = examples / max(now - self._last_time, 1e-9)
      self._last_time = now
      row = self._emit(step, split, values)
      self._bar.set_postfix(loss=f"{row.get('loss', float('nan')):.4f}",
                            ex_s=f"{values['examples_per_sec']:.0f}")

  def _emit(self, step: int, split: str, metrics: dict) -> dict:
    values = {k: float(np.asarray(v)) for k, v in metrics.items()}
    if self._is_writer:
      self._jsonl.write(json.dumps({"step": step, "split": split, **values}) + "\n")
      self._jsonl.flush()
      if self._tb is not None:
        for k, v in values.items():
          self._tb.add_scalar(f"{split}/{k}", v, step)
    return values

  def close(self) -> None:
    self._flush()
    self._bar.close()
    if self._is_writer:
      self._jsonl.close()
      if self._tb is not None:
        self._tb.close()
