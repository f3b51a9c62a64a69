"""Test set-up: 8 simulated CPU devices, set before anything imports JAX."""

import os
import pathlib
import sys
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One compilation cache for the whole run, shared with the subprocesses that
# tests start (kill/resume, multi-process): each program compiles once.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="l2d-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

SHARED_SQUAD = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad"


@pytest.fixture(scope="session")
def torch():
  """PyTorch, the parity tests' reference (`make test` installs its CPU wheel, torch==2.13.0).

  That wheel exists for Python 3.11 only, and from the registry torch is a CUDA build of
  several GB, so on Python 3.12+ these tests skip when torch is absent and say why. On 3.11
  a missing torch is an error: the run that must execute them cannot skip them.
  """
  if sys.version_info >= (3, 12):
    pytest.importorskip("torch", reason="PyTorch parity reference: torch is not installed on "
                        "this Python 3.12+ (its local CPU wheel, torch==2.13.0, is for 3.11, "
                        "where `make test` runs these tests)")
  import torch as torch_module  # pylint: disable=import-outside-toplevel
  return torch_module


@pytest.fixture
def shared_squad() -> pathlib.Path:
  """The real SQuAD dev files in ../shared; tests that need them skip with the reason."""
  if not (SHARED_SQUAD / "dev-v1.1.json").exists():
    pytest.skip(f"real SQuAD data not found at {SHARED_SQUAD} (../shared is absent)")
  return SHARED_SQUAD
