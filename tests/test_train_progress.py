"""Progress in log files: whole lines, few of them, with rate, ETA and loss."""

import io

import numpy as np
import tqdm

from l2d_jax.train import log as log_lib
from l2d_jax.train import progress as progress_lib


class FakeClock:
  def __init__(self):
    self.now = 100.0

  def __call__(self) -> float:
    return self.now


class Terminal(io.StringIO):
  def isatty(self) -> bool:
    return True


def test_lines_first_then_every_interval_then_last():
  clock, out = FakeClock(), io.StringIO()
  bar = progress_lib.LineProgress(total=100, desc="rejector", unit="step", interval_s=30.0,
                                  file=out, clock=clock)
  for _ in range(100):
    clock.now += 1.0  # one step per second
    bar.set_postfix(loss="0.4312")
    bar.update(1)
  bar.close()
  bar.close()  # closing twice writes nothing more
  lines = out.getvalue().splitlines()
  assert "\r" not in out.getvalue()
  # step 1, then each time 30 s have passed since the last line (31, 61, 91), then the end.
  assert [line.split("/")[0] for line in lines] == ["rejector: 1", "rejector: 31", "rejector: 61",
                                                    "rejector: 91", "rejector: 100"]
  assert lines[1] == ("rejector: 31/100 step (31%), 1 step/s, 0:00:31 elapsed, ETA 0:01:09, "
                      "loss=0.4312")
  assert lines[-1].startswith("rejector: 100/100 step (100%), 1 step/s, 0:01:40 elapsed, ETA 0:00:00")


def test_resumed_run_counts_its_rate_from_where_it_resumed():
  clock, out = FakeClock(), io.StringIO()
  bar = progress_lib.LineProgress(total=1000, initial=600, desc="train", unit="step",
                                  file=out, clock=clock)
  clock.now += 4.0
  bar.update(2)
  assert out.getvalue() == "train: 602/1000 step (60%), 0.5 step/s, 0:00:04 elapsed, ETA 0:13:16\n"


def test_iterating_writes_a_last_line_without_a_total_given():
  clock, out = FakeClock(), io.StringIO()
  for _ in progress_lib.LineProgress(range(5), desc="precompute", unit="chunk", file=out,
                                     clock=clock, interval_s=1e9):
    clock.now += 2.0
  assert out.getvalue().splitlines() == [
      "precompute: 1/5 chunk (20%), 0.5 chunk/s, 0:00:02 elapsed, ETA 0:00:08",
      "precompute: 5/5 chunk (100%), 0.5 chunk/s, 0:00:10 elapsed, ETA 0:00:00"]


def test_a_terminal_gets_tqdm_and_a_file_gets_lines(monkeypatch):
  assert isinstance(progress_lib.progress(total=3, file=Terminal()), tqdm.tqdm)
  monkeypatch.setenv(progress_lib.ENV_INTERVAL, "7.5")
  lines = progress_lib.progress(total=3, file=io.StringIO())
  assert isinstance(lines, progress_lib.LineProgress) and lines.interval_s == 7.5


def test_metrics_logger_writes_few_lines_to_a_log_file(tmp_path, monkeypatch):
  stderr = io.StringIO()
  monkeypatch.setattr("sys.stderr", stderr)
  logger = log_lib.MetricsLogger(tmp_path, total_steps=200, desc="rejector", tensorboard=False)
  for step in range(200):
    logger.step(step + 1, {"loss": np.float32(0.5)}, examples=32)
  logger.close()
  lines = stderr.getvalue().splitlines()
  assert len(lines) == 2  # the first step and the end, 200 steps within 30 s
  assert lines[-1].startswith("rejector: 200/200 step (100%)") and "loss=0.5000" in lines[-1]
  assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 200
