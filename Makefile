# Set-up and entry points. `make demo` and `make test` each do the whole set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: setup demo test lint format test-fast clean peers bench-quick

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

# Peer libraries for the side-by-side benchmarks, each in its own venv (their READMEs in
# ../shared/peers/). The official GRU4Rec needs only torch, numpy and pandas: warmrec's venv runs it.
PEERS ?= .peers
$(PEERS)/rectools/.installed:
	$(PYTHON) -m venv $(PEERS)/rectools
	$(PEERS)/rectools/bin/pip install -q torch==2.13.0
	$(PEERS)/rectools/bin/pip install -q "rectools[torch]==0.19.0" "torch==2.13.0"
	touch $@

peers: $(PEERS)/rectools/.installed

# The side-by-side speed checks (official GRU4Rec, RecTools) and their ratios, < 10 min on a quiet
# 2-core machine. BENCH_ARGS=--record writes the sections of benchmarks/results/*.md.
bench-quick: setup
	@mkdir -p $(PEERS)
	@$(MAKE) --no-print-directory peers > $(PEERS)/setup.log 2>&1 || echo "bench-quick: the RecTools venv could not be built under $(PEERS)/rectools (log: $(PEERS)/setup.log): RecTools side skipped"
	$(PY) benchmarks/bench_quick.py --rectools-python $(PEERS)/rectools/bin/python $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
