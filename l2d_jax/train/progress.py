"""Progress of long loops: a bar on a terminal, a line every so often in a log file.

Batch jobs write stderr to files, where a bar that redraws many times a
second floods the log with carriage returns. `progress()` gives tqdm's bar
when its stream is a terminal, and otherwise a `LineProgress`: one whole line
at the first update, then at most one every `L2D_JAX_PROGRESS_EVERY_S`
seconds (default 30), and a last one when the loop closes, each with the
position, the rate, the elapsed time, the ETA and the latest postfix (the loss):

  rejector: 400/1000 step (40%), 21.3 step/s, 0:00:19 elapsed, ETA 0:00:28, loss=0.4312 ex_s=682
"""

import datetime
import os
import sys
import time
from collections.abc import Iterable
from typing import TextIO

import tqdm

ENV_INTERVAL = "L2D_JAX_PROGRESS_EVERY_S"
DEFAULT_INTERVAL_S = 30.0


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", initial: int = 0, disable: bool = False,
             file: TextIO | None = None):
  """A tqdm bar on a terminal, else a `LineProgress`; both iterate, update, set_postfix, close."""
  file = file or sys.stderr
  if disable or file.isatty():
    return tqdm.tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial,
                     dynamic_ncols=True, disable=disable, file=file)
  interval = float(os.environ.get(ENV_INTERVAL, DEFAULT_INTERVAL_S))
  return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                      interval_s=interval, file=file)


class LineProgress:
  """Progress as complete log lines, at most one per `interval_s` (plus the first and last)."""

  def __init__(self, iterable: Iterable | None = None, *, total: int | None = None,
               desc: str = "", unit: str = "it", initial: int = 0,
               interval_s: float = DEFAULT_INTERVAL_S, file: TextIO | None = None,
               clock=time.monotonic):
    self.iterable = iterable
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
      total = initial + len(iterable)
    self.total, self.desc, self.unit = total, desc, unit
    self.n = self._initial = self._written = initial
    self.interval_s = interval_s
    self.file = file or sys.stderr
    self._clock = clock
    self._start = self._last = clock()
    self._postfix: dict[str, object] = {}
    self._closed = False

  def __iter__(self):
    for item in self.iterable:
      yield item
      self.update(1)
    self.close()

  def update(self, n: int = 1) -> None:
    self.n += n
    now = self._clock()
    if self._written == self._initial or now - self._last >= self.interval_s:
      self._write(now)

  def set_postfix(self, **values) -> None:
    self._postfix = values

  def close(self) -> None:
    if not self._closed and self.n != self._written:
      self._write(self._clock())
    self._closed = True

  def line(self, now: float) -> str:
    """The progress line at time `now`."""
    elapsed = now - self._start
    done = self.n - self._initial
    rate = done / elapsed if elapsed > 0 else 0.0
    parts = [f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"]
    if self.total:
      parts[0] += f" ({self.n / self.total:.0%})"
    parts.append(f"{rate:.3g} {self.unit}/s")
    parts.append(f"{_clock_time(elapsed)} elapsed")
    if self.total and rate > 0:
      parts.append(f"ETA {_clock_time((self.total - self.n) / rate)}")
    line = f"{self.desc}: " + ", ".join(parts) if self.desc else ", ".join(parts)
    if self._postfix:
      line += ", " + " ".join(f"{k}={v}" for k, v in self._postfix.items())
    return line

  def _write(self, now: float) -> None:
    self.file.write(self.line(now) + "\n")
    self.file.flush()
    self._last, self._written = now, self.n


def _clock_time(seconds: float) -> str:
  return str(datetime.timedelta(seconds=round(seconds)))
