# make run   — set up .venv (if missing) and run the default job on the embedded synthetic data
# make test  — set up .venv with the dev extras (if missing) and run the test suite (what CI runs)
# make test-fast — the same without the end-to-end and subprocess tests (`-m "not slow"`)
# make bench — speed/memory ratios against the reference implementations
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
# The CPU build keeps the venv small; use `make run TORCH=torch` for a CUDA build.
TORCH ?= torch==2.13.0
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true
export PYTHONUNBUFFERED := 1

.PHONY: run test test-fast bench tables setup setup-dev clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) "$(TORCH)"
	$(PIP) -e ".[wandb,slurm]"
	touch $@

# vus (the metrics reference) needs TensorFlow by its metadata; only its metric path is
# used, so it is installed without dependencies, plus the modules that path imports.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) -e ".[dev]"
	$(PIP) --no-deps "vus==0.0.6"
	$(PY) -c "from vus.metrics import get_metrics"
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(VENV)/bin/madbench $(ARGS)

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q -n 2 --dist loadgroup $(ARGS)

test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow" $(ARGS)

bench: $(VENV)/.installed-dev
	$(PY) scripts/bench.py all $(ARGS)

tables: $(VENV)/.installed
	$(VENV)/bin/python scripts/tables.py $(ARGS)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .hypothesis
