# planetgen: `make demo` runs the main job, `make test` runs everything CI runs.
# Both create .venv and install .[dev] when missing or when pyproject.toml changed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: setup demo test lint typecheck unit e2e crds bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/planet demo

test: setup lint typecheck
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --config pyproject.toml

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -m "not e2e"

e2e: setup
	$(VENV)/bin/pytest -m e2e

# Regenerate the committed CRDs (crds/ and the chart's copy) from the models.
crds: setup
	$(VENV)/bin/planet crds --write

bench: setup
	$(VENV)/bin/python bench/run_all.py

clean:
	rm -rf $(VENV) .planet out .pytest_cache .mypy_cache .ruff_cache
