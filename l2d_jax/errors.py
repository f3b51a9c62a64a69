"""The one base class of errors a user causes and can fix, which the CLI reports in one line.

A bad data file, an unknown config name or `--set` key, a missing checkpoint, a
damaged export or an agent store made with other features are the user's to
fix: `l2d-jax` prints their message as `l2d-jax COMMAND: error: ...` on stderr
and exits with status 2 (`--verbose` adds the traceback). Any other exception
is a bug of ours and keeps its traceback. Subclasses also derive from the
builtin type callers already catch (`DataError` is a ValueError, ...).

This module imports nothing, so every layer can raise its subclasses.
"""


class UserError(Exception):
  """Input, configuration or an artifact on disk that the user has to fix; not a bug."""


class ConfigError(UserError, ValueError):
  """An experiment that cannot be found or loaded, or a config key or value that does not fit."""


class MissingExtraError(UserError, ImportError):
  """An optional dependency that the chosen feature needs is not installed.

  The message names the `pip install 'l2d-jax[EXTRA]'` that brings it (pyproject.toml's
  optional-dependencies), so a missing extra is one line, not an import traceback.
  """

  def __init__(self, feature: str, extra: str, cause: ImportError):
    super().__init__(f"{feature} needs the optional dependencies of l2d-jax[{extra}] ({cause}): "
                     f"pip install 'l2d-jax[{extra}]'")
