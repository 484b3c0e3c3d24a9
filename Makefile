# ocsf-detect: every target sets up what it needs. `make demo` and `make test` are the two
# commands a new user runs; CI runs `.ci/run`, which runs `make test` in a fresh venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= train,emulator,dev,infra

.PHONY: help install lint format test test-fast demo bench clean

# Infrastructure targets (synth, layer) live beside the CDK app.
-include infra/make.mk

help:
	@echo "make demo    - set up, then run the whole pipeline locally (no AWS account)"
	@echo "make test    - set up, then lint and run every test"
	@echo "make bench   - throughput and latency benchmarks (prints JSON)"
	@echo "make synth   - synthesize the CDK app for every stage, offline"

# The runtime libraries at the versions the dependency layer ships: tests, benchmarks and
# the evaluation score with what Lambda runs (tests/infra/test_dependency_layer.py).
LAYER_PINS := layers/dependencies/requirements.txt

$(STAMP): pyproject.toml $(LAYER_PINS) Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch is pinned in the [train] extra; pip takes a CPU build when its index has one
	# (PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu elsewhere).
	$(PIP) install -q -c $(LAYER_PINS) -e '.[$(EXTRAS)]'
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy layers/shared/ocsf_detect tools/ocsf_detect_tools functions

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow" -x -q

demo: install
	$(BIN)/ocsf-detect demo $(if $(EVENTS),--events $(EVENTS)) $(if $(LABELS),--labels $(LABELS))

bench: install
	$(BIN)/ocsf-detect bench --json

clean:
	rm -rf .build cdk.out demo-out .pytest_cache .mypy_cache .ruff_cache
