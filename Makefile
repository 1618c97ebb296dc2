# Targets match CI: `make test` is what .ci/run calls.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STORE ?= $(CURDIR)/store
export TF_CPP_MIN_LOG_LEVEL := 2
export KERAS_BACKEND ?= tensorflow

.PHONY: setup lint format test test-slow test-containers demo compile golden mutation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

$(VENV)/.installed: setup.cfg pyproject.toml images/requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -c images/requirements.txt -e '.[test,bench]'
	touch $@

setup: $(VENV)/.installed
	bash scripts/install_system_deps.sh

lint: setup
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# Fast suite (CI): unit, compile, store on both backends, one local pipeline run.
test: setup lint
	$(BIN)/python -m pytest -q -m "not slow and not containers" -p no:cacheprovider

# Long tests: multi-process races at full size, full local pipeline runs, benchmark smoke.
test-slow: setup
	$(BIN)/python -m pytest -q -m slow -p no:cacheprovider

# The pipeline in its container image, with no registry (as root): installs podman, buildah,
# runc and mmdebstrap and starts podman's Docker-compatible API, builds the CPU image offline
# (images/build.sh --local), then runs two tasks in it through kfp.local's DockerRunner and
# compares them with the subprocess runner (tests/test_containers.py).
PODMAN_SOCKET ?= /run/podman/podman.sock
TEST_IMAGE ?= localhost/mu2net-cpu:test
test-containers: setup
	MU2NET_PODMAN_SOCKET=$(PODMAN_SOCKET) bash scripts/install_container_runtime.sh --service
	PYTHON=$(BIN)/python bash images/build.sh --local --tag $(TEST_IMAGE)
	DOCKER_HOST=unix://$(PODMAN_SOCKET) MU2NET_CONTAINER_TESTS=1 MU2NET_TEST_IMAGE=$(TEST_IMAGE) \
	  $(BIN)/python -m pytest -q -s -m containers -p no:cacheprovider tests/test_containers.py

# Mutation check of the suite (not in CI: hours on 2 cores): mutmut 3 mutates
# mu2net/scoring.py, mu2net/mutations.py and mu2net/store/ (setup.cfg [mutmut]) and runs the
# tests of tests/test_{scoring,mutations}.py and tests/test_store*.py that cover each
# mutated function. MUTANTS narrows it (mutmut's name globs, e.g. 'mu2net.scoring*');
# MUTMUT_CHILDREN sets the parallel workers. README "Mutation score" has the last numbers.
MUTANTS ?=
MUTMUT_CHILDREN ?= 2
mutation: setup
	$(BIN)/pip install -q -e '.[mutation]'
	set -f; $(BIN)/mutmut run --max-children $(MUTMUT_CHILDREN) $(MUTANTS)  # globs for mutmut, not the shell
	$(BIN)/mutmut results
	$(BIN)/python scripts/mutation_score.py

# The main job on the embedded default (local store, kfp.local).
demo: setup
	$(BIN)/mu2net demo --store $(STORE)

# Compile the onboarding pipeline: MU2NET_STORE=gs://BUCKET/store make compile CONFIG=gpu \
#   TARGET=gpu REGISTRY=us-central1-docker.pkg.dev/P/mu2net (no default store: one you own)
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
