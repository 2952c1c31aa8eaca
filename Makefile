# Pilotfish: `make demo` brings the mesh up with the sample config; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DASHBOARD_JS := pilotfish/dashboard/static/app.js
PYTEST_WORKERS ?= 2

.PHONY: install test unit integration e2e demo lint clean dashboard

install: $(STAMP) $(DASHBOARD_JS)

$(STAMP): pyproject.toml scripts/install-system-deps.sh Makefile
	PYTHON=$(PYTHON) ./scripts/install-system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,postgres]'
	# xds-protos ships an old copy of opentelemetry/proto that silently drops OTLP spans; put
	# opentelemetry-proto's own files back over it (the trace collector checks at start).
	$(PY) -m pip install -q --disable-pip-version-check --force-reinstall --no-deps \
	  "$$(grep -o 'opentelemetry-proto[^"]*' pyproject.toml)"
	touch $(STAMP)

# The dashboard's browser app: TypeScript bundled by esbuild into the Python package
# (pilotfish/dashboard/static), so a wheel serves it without npm or network.
dashboard: $(DASHBOARD_JS)

$(DASHBOARD_JS): web/package-lock.json web/tsconfig.json $(wildcard web/src/*)
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

# Lint first (ruff, mypy, import contracts); then unit and integration tests in parallel; then the e2e tests
# (pods, iptables), one at a time.
test: install lint
	$(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) tests/unit tests/integration
	@if ls tests/e2e/test_*.py >/dev/null 2>&1; then \
	  $(PY) -m pytest -q -p no:cacheprovider tests/e2e; \
	fi

unit: install
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) tests/unit

integration: install
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) tests/integration

e2e: install
	$(PY) -m pytest -q tests/e2e

demo: install
	./scripts/demo.sh

lint: install
	$(VENV)/bin/ruff check pilotfish tests bench samples
	$(VENV)/bin/ruff format --check pilotfish tests bench samples
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	cd web && npx --no-install tsc --noEmit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache web/node_modules
	rm -f pilotfish/dashboard/static/app.js pilotfish/dashboard/static/app.css
