# Set-up and entry points. `make demo` and `make test` each do the whole set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: setup demo test lint format test-fast clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	@# torch first, and only when missing: 2.13.0 is the CPU build on this machine's disk
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev,all]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/warmrec demo

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: setup
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

test: setup lint
	$(PY) -m pytest -n 2 -q tests

test-fast: setup
	$(PY) -m pytest -n 2 -q -m "not slow" tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
