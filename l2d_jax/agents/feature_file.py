"""Agent features in a file, keyed by question id: what a rejector reads when it routes.

A rejector that reads model agents' own features (`store.STATISTICS` and the
pooled hidden state) needs them for every question it routes. Precompute
writes them for the store's questions (`STORE/AGENT/agent_features.npz`), and
`l2d-jax agent-features` for any SQuAD file; `l2d-jax route --agent-features`
reads them. One `.npz` holds:

  question_ids         str [E]
  AGENT/statistics     float32 [E, S], columns `AGENT/statistic_names`
  AGENT/statistic_names  str [S] (store.STATISTICS when written)
  AGENT/hidden         float32 [E, H]

for one or more agents. Reading picks the rows of the questions asked for, in
their order, and checks the statistics' names, so a file written by another
version is an error naming the file and the field rather than a silent shift.
"""

import os
import pathlib
import zipfile
from collections.abc import Mapping, Sequence

import numpy as np

from l2d_jax.agents import store as store_lib
from l2d_jax.data.example import DataError

FILE_NAME = "agent_features.npz"


def write(path: str | os.PathLike, question_ids: Sequence[str],
          agents: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> pathlib.Path:
  """Writes `{agent: (statistics_ExS, hidden_ExH)}` for `question_ids` (atomically)."""
  path = pathlib.Path(path)
  arrays = {"question_ids": np.asarray(list(question_ids), str)}
  for agent, (statistics_ExS, hidden_ExH) in agents.items():
    if "/" in agent or len(statistics_ExS) != len(question_ids) or len(hidden_ExH) != len(
        question_ids):
      raise ValueError(f"{path}: agent {agent!r} needs a name without '/' and one row per "
                       f"question ({len(question_ids)}), got {len(statistics_ExS)} and "
                       f"{len(hidden_ExH)}")
    arrays[f"{agent}/statistics"] = np.asarray(statistics_ExS, np.float32)
    arrays[f"{agent}/statistic_names"] = np.asarray(store_lib.STATISTICS, str)
    arrays[f"{agent}/hidden"] = np.asarray(hidden_ExH, np.float32)
  tmp = path.with_name(f".{path.name}.tmp.npz")
  np.savez(tmp, **arrays)
  os.replace(tmp, path)
  return path


def is_current(path: str | os.PathLike, agent: str) -> bool:
  """Whether `path` holds `agent`'s features with this version's statistics (`store.STATISTICS`)."""
  try:
    with np.load(path) as z:
      return z[f"{agent}/statistic_names"].tolist() == list(store_lib.STATISTICS)
  except (OSError, KeyError, ValueError, zipfile.BadZipFile):
    return False


def read(path: str | os.PathLike, agents: Sequence[str], question_ids: Sequence[str]
         ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """`{agent: (statistics_ExS, hidden_ExH)}` for `question_ids`, in that order.

  Raises DataError naming the file (and the field) when it lacks an agent, a
  question or the statistics in `store.STATISTICS` order.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"no agent features file {path}")
  try:
    archive = np.load(path)
  except (OSError, ValueError, zipfile.BadZipFile) as err:  # not an .npz, or damaged
    raise DataError(f"not an agent features file ({type(err).__name__}: {err})",
                    file=str(path)) from None
  if not hasattr(archive, "files"):  # a bare .npy array, not an .npz archive
    raise DataError("not an agent features file (an array, not an .npz archive)", file=str(path))
  with archive as z:
    if "question_ids" not in z:
      raise DataError("not an agent features file: no question ids", file=str(path),
                      field="question_ids")
    row_of = {qid: i for i, qid in enumerate(z["question_ids"].tolist())}
    missing = [qid for qid in question_ids if qid not in row_of]
    if missing:
      raise DataError(f"{len(missing)} questions have no features (first: {missing[:5]})",
                      file=str(path), field="question_ids")
    rows = np.array([row_of[qid] for qid in question_ids], np.int64)
    out = {}
    for agent in agents:
      if f"{agent}/statistics" not in z or f"{agent}/hidden" not in z:
        present = sorted({k.split("/")[0] for k in z.files if "/" in k})
        raise DataError(f"no features of agent {agent!r} (it has {present})", file=str(path),
                        field=f"{agent}/statistics")
      if f"{agent}/statistic_names" not in z:
        raise DataError(f"agent {agent!r} has no statistic names", file=str(path),
                        field=f"{agent}/statistic_names")
      names = z[f"{agent}/statistic_names"].tolist()
      if names != list(store_lib.STATISTICS):
        raise DataError(f"statistics {names}, expected {list(store_lib.STATISTICS)}",
                        file=str(path), field=f"{agent}/statistic_names")
      out[agent] = (z[f"{agent}/statistics"][rows], z[f"{agent}/hidden"][rows])
  return out
