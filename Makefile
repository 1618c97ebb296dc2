# Targets match CI: `make test` is what .ci/run calls.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STORE ?= $(CURDIR)/store
export TF_CPP_MIN_LOG_LEVEL := 2
export KERAS_BACKEND ?= tensorflow

.PHONY: setup lint format test test-slow demo compile golden clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

setup: $(VENV)/.installed
	bash scripts/install_system_deps.sh

lint: setup
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# Fast suite (CI): unit, compile, store on both backends, one local pipeline run.
test: setup lint
	$(BIN)/python -m pytest -q -m "not slow" -p no:cacheprovider

# Long tests: multi-process races at full size, full local pipeline runs, benchmark smoke.
test-slow: setup
	$(BIN)/python -m pytest -q -m slow -p no:cacheprovider

# The main job on the embedded default (local store, kfp.local).
demo: setup
	$(BIN)/mu2net demo --store $(STORE)

# Compile the onboarding pipeline: make compile CONFIG=gpu TARGET=gpu REGISTRY=europe-docker.pkg.dev/P/mu2net
CONFIG ?= gpu
TARGET ?= gpu
REGISTRY ?=
compile: setup
	$(BIN)/mu2net compile --config $(CONFIG) --target $(TARGET) --registry '$(REGISTRY)' --out build/

# Regenerate tests/golden/*.yaml after an intended change of the pipeline or its components.
golden: setup
	$(BIN)/python tests/test_pipeline_golden.py

clean:
	rm -rf $(VENV) local_outputs .pytest_cache
