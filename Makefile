# planetgen: `make demo` runs the main job, `make test` runs everything CI runs.
# Both create .venv and install .[dev] plus the harness (harness/: `planet dev up`, `planet demo`)
# when missing or when a pyproject.toml changed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: setup demo test lint typecheck unit e2e cluster components crds bench bench-autoscaling clean

$(STAMP): pyproject.toml harness/pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -e ./harness
	@touch $(STAMP)

setup: $(STAMP)

# The planet preset (trained here, shipped in the checkout) on the reference pipeline at its native size:
# a 50-prompt contact sheet scored by the verifier, the upscale chain, a canary, a promotion, a rollback.
demo: setup
	$(VENV)/bin/planet demo -f examples/planet-demo.yaml --sheet 50 --steps 0

test: setup lint typecheck components
	$(VENV)/bin/pytest

# Build the real components the cluster tests run (etcd, kube-apiserver, kube-controller-manager,
# kubectl, KServe's manager and router, KEDA, Prometheus) from their pinned Go modules in harness/components/.
# About 35 minutes on 2 cores the first time (KEDA about 20, Prometheus 6); afterwards only when a pin changes.
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

# The peers bench/serving.py compares with (LitServe, Ray Serve), pinned by the bench extra and
# constrained to what .venv already holds, so they never move a package the product is tested with.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip freeze --exclude-editable | grep -v ' @ ' > $(VENV)/constraints.txt
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -e '.[bench]'
	@touch $(BENCH_STAMP)

bench: setup $(BENCH_STAMP)
	$(VENV)/bin/python bench/run_all.py

# The simulation's 10x burst on the real stack (Prometheus, KEDA, the HPA) beside the simulation's
# prediction; it starts its own stack (one per machine). Needs the components.
bench-autoscaling: setup components
	$(VENV)/bin/python bench/autoscaling_real.py

clean:
	rm -rf $(VENV) .planet out .pytest_cache .mypy_cache .ruff_cache
	@echo 'kept .cache/components (Go builds); rm -rf .cache to rebuild them'
