# planetgen: `make demo` runs the main job, `make test` runs everything CI runs.
# Both create .venv and install .[dev] plus the harness (harness/: `planet dev up`, `planet demo`)
# when missing or when a pyproject.toml changed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: setup demo test lint typecheck unit e2e cluster components crds bench clean

$(STAMP): pyproject.toml harness/pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -e ./harness
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/planet demo

test: setup lint typecheck components
	$(VENV)/bin/pytest

# Build the real components the cluster tests run (etcd, kube-apiserver, kube-controller-manager,
# kubectl, KServe's manager and router) from their pinned Go modules in harness/components/.
# About 12 minutes on 2 cores the first time; afterwards only when a pin changes (seconds).
components: setup
	$(PY) -m planet_harness.components

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --config pyproject.toml

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -m "not e2e and not cluster"

e2e: setup
	$(VENV)/bin/pytest -m e2e

cluster: setup components
	$(VENV)/bin/pytest -m cluster

# Regenerate the committed CRDs (crds/ and the chart's copy) from the models.
crds: setup
	$(VENV)/bin/planet crds --write

bench: setup
	$(VENV)/bin/python bench/run_all.py

clean:
	rm -rf $(VENV) .planet out .pytest_cache .mypy_cache .ruff_cache
	@echo 'kept .cache/components (Go builds); rm -rf .cache to rebuild them'
